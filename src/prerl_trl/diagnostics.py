"""Gradient alignment of log P(y) (pre-train space) and log P(y|x) (conditional), `prerl-trl grad-align`.

A PreRL step theta' = theta + eta * R * grad log P(y) changes log P(y|x) by about
eta * R * <grad log P(y), grad log P(y|x)> to first order. The paper measures this inner product on 400 rollouts of
Qwen3-4B on AMC23 (mean +9.23, min +0.94, max +46.18, none negative; mean cosine 0.44). `gradient_alignment`
computes it pair by pair over all trainable parameters.

Scoring follows training:
- conditional: prompt tokens + completion tokens, only completion tokens scored;
- pre-train space: [context] + completion tokens, position ids restarting at 0, every completion token scored, the
  input built by `pretrain_space.build_marginal_inputs` as in training. The context is the single context token, or
  (`context="chat_frame"` / `"chat_frame_history"`, with the conversations the prompts were rendered from) the chat
  frame without the question, as `PreRLConfig.prerl_context` makes it.
Prompt and completion are tokenised separately without special tokens.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .pretrain_space import (
    PretrainContext,
    build_marginal_inputs,
    chat_template_renderer,
    resolve_context_token_id,
)

PAIRS_FILE = "alignment.jsonl"
SUMMARY_FILE = "summary.json"


def context_token_id(tokenizer: Any, token: str | None = None) -> int:
    """The pre-train-space context token id, resolved exactly as in training
    (`prerl_trl.pretrain_space.resolve_context_token_id`)."""
    return resolve_context_token_id(tokenizer, token)


def _accepts_logits_to_keep(model: Any) -> bool:
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _logp_and_grads(model: Any, params: list, ids: Any, num_scored: int, logits_to_keep: bool):
    """Summed log-prob of the last `num_scored` tokens of `ids` (`(1, L)`, positions 0..L-1) and its gradient w.r.t.
    `params` (None entries for unused parameters). Nothing of the graph survives the call."""
    import torch

    device = params[0].device
    ids = ids.to(device)
    kwargs: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "position_ids": torch.arange(ids.shape[1], device=device)[None],
        "use_cache": False,
    }
    if logits_to_keep:
        kwargs["logits_to_keep"] = num_scored + 1
    logits = model(**kwargs).logits[0, -num_scored - 1 : -1]
    if logits.dtype in (torch.float16, torch.bfloat16):  # log-softmax in fp32, never below the model's precision
        logits = logits.float()
    targets = ids[0, -num_scored:]
    logp = (logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)).sum()
    del logits
    grads = list(torch.autograd.grad(logp, params, allow_unused=True))
    return float(logp.detach()), grads


def _checkpointing(model: Any) -> bool:
    # transformers 5 renamed gradient checkpointing to activation checkpointing (the old names warn)
    if hasattr(model, "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


def _set_checkpointing(model: Any, on: bool) -> None:
    """Non-reentrant checkpointing (the kind `torch.autograd.grad` supports), through whichever API the model has."""
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif hasattr(model, "gradient_checkpointing_enable"):
        if on:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
    else:
        raise ValueError("gradient_checkpointing=True needs a transformers model")


def gradient_alignment(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    context_token: str | None = None,
    *,
    context: str = "token",
    conversations: Sequence[list[dict]] | None = None,
    progress: bool = False,
    on_result: Any = None,
    gradient_checkpointing: bool = False,
) -> list[dict[str, float]]:
    """Inner product and cosine of grad log P(y) and grad log P(y|x), one prompt/completion pair at a time.

    Args:
        model: a causal LM; gradients are taken over its trainable parameters (`requires_grad`).
        tokenizer: its tokenizer. Prompts and completions are plain strings, tokenised separately with
            `add_special_tokens=False` (a chat-templated prompt keeps its special tokens, which are part of its text).
        prompts, completions: the pairs (x, y).
        context_token: the token before the completion in pre-train space (`context="token"`); None: BOS, else
            `<|im_start|>`, else EOS.
        context: `"token"`, `"chat_frame"` or `"chat_frame_history"`, as `PreRLConfig.prerl_context`.
        conversations: with a chat frame, the message lists the prompts were rendered from (one per pair); the frame
            is rendered by the tokenizer's chat template.
        progress: show a tqdm bar.
        on_result: optional callable `(index, result_dict)` called after each pair (for incremental writing).
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant checkpointing), for long
            responses on large models. transformers only checkpoints in training mode, so the model runs in
            `train()` mode then: dropout, if the model has any, is active.

    Returns:
        one dict per pair: `inner_product`, `cosine`, `logp_conditional`, `logp_marginal` (log-probs summed over the
        completion tokens), plus `grad_norm_conditional`, `grad_norm_marginal`, `num_prompt_tokens`,
        `num_completion_tokens`.

    Memory: one pair at a time; the marginal gradient is kept (in the parameters' dtype) while the conditional one is
    computed, then they are reduced parameter by parameter in fp64 and freed. No `.grad` is accumulated and no graph
    survives a pair, so a 4B model fits one GPU.
    """
    import torch
    from tqdm.auto import tqdm

    if isinstance(prompts, str) or isinstance(completions, str):
        raise TypeError("prompts and completions must be lists of strings")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions: pass one prompt per completion")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=False everywhere)")
    if context != "token" and (conversations is None or len(conversations) != len(prompts)):
        raise ValueError(f"context={context!r} needs one conversation (list of messages) per pair")
    pretrain_context = PretrainContext(context, context_token_id(tokenizer, context_token),
                                       chat_template_renderer(tokenizer) if context != "token" else None)
    keep = _accepts_logits_to_keep(model)
    was_training = model.training
    was_checkpointing = _checkpointing(model)
    if gradient_checkpointing:
        _set_checkpointing(model, True)
        model.train()
    else:
        model.eval()
    model.zero_grad(set_to_none=True)
    results = []
    try:
        with torch.enable_grad():
            for i, (prompt, completion) in enumerate(
                tqdm(list(zip(prompts, completions, strict=True)), desc="grad-align", unit="pair",
                     disable=not progress)
            ):
                x = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
                y = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
                if not y:
                    raise ValueError(f"pair {i}: the completion is empty after tokenisation")
                if not x:
                    raise ValueError(f"pair {i}: the prompt is empty after tokenisation")
                y_ids = torch.tensor([y], dtype=torch.long)
                ctx = pretrain_context.ids(conversations[i] if conversations is not None else prompt)
                marginal, _ = build_marginal_inputs(y_ids, torch.ones_like(y_ids), torch.tensor([ctx]))
                logp_m, grads_m = _logp_and_grads(model, params, marginal, len(y), keep)
                logp_c, grads_c = _logp_and_grads(model, params, torch.tensor([x + y]), len(y), keep)
                dot = torch.zeros((), dtype=torch.float64, device=params[0].device)
                sq_m, sq_c = dot.clone(), dot.clone()
                for j in range(len(params)):
                    gm, gc = grads_m[j], grads_c[j]
                    grads_m[j] = grads_c[j] = None  # free as we go
                    if gm is not None:
                        gm = gm.to(torch.float64)
                        sq_m += (gm * gm).sum()
                    if gc is not None:
                        gc = gc.to(torch.float64)
                        sq_c += (gc * gc).sum()
                    if gm is not None and gc is not None:
                        dot += (gm * gc).sum()
                    del gm, gc
                del grads_m, grads_c
                inner, norm_m, norm_c = float(dot), math.sqrt(float(sq_m)), math.sqrt(float(sq_c))
                result = {
                    "inner_product": inner,
                    "cosine": inner / (norm_m * norm_c) if norm_m > 0 and norm_c > 0 else float("nan"),
                    "logp_conditional": logp_c,
                    "logp_marginal": logp_m,
                    "grad_norm_conditional": norm_c,
                    "grad_norm_marginal": norm_m,
                    "num_prompt_tokens": len(x),
                    "num_context_tokens": len(ctx),
                    "num_completion_tokens": len(y),
                }
                results.append(result)
                if on_result is not None:
                    on_result(i, result)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        if gradient_checkpointing and not was_checkpointing:
            _set_checkpointing(model, False)
    return results


def summarize_alignment(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """The paper's summary: mean / min / max inner product, share of negative inner products, mean cosine (and the
    mean log-probs)."""
    if not results:
        raise ValueError("no alignment results to summarise")
    ips = [r["inner_product"] for r in results]
    cosines = [r["cosine"] for r in results if not math.isnan(r["cosine"])]
    return {
        "num_pairs": len(results),
        "inner_product_mean": sum(ips) / len(ips),
        "inner_product_min": min(ips),
        "inner_product_max": max(ips),
        "negative_frac": sum(1 for v in ips if v < 0) / len(ips),
        "cosine_mean": sum(cosines) / len(cosines) if cosines else float("nan"),
        "logp_conditional_mean": sum(r["logp_conditional"] for r in results) / len(results),
        "logp_marginal_mean": sum(r["logp_marginal"] for r in results) / len(results),
    }


def format_summary(summary: dict[str, float]) -> str:
    s = summary
    return "\n".join([
        "| pairs | <g_y, g_y|x> mean | min | max | negative | cosine mean | log P(y|x) mean | log P(y) mean |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {s['num_pairs']} | {s['inner_product_mean']:+.4g} | {s['inner_product_min']:+.4g} | "
        f"{s['inner_product_max']:+.4g} | {100 * s['negative_frac']:.1f}% | {s['cosine_mean']:.3f} | "
        f"{s['logp_conditional_mean']:.2f} | {s['logp_marginal_mean']:.2f} |",
    ])


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------


def _pair_hash(prompt: str, completion: str, context: Any) -> str:
    text = json.dumps([prompt, completion, context])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _read_rows(path: str | os.PathLike, limit: int | None) -> list[tuple[int, dict]]:
    """The first `limit` JSON objects of a JSONL pairs file, with their line numbers (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pairs file {str(path)!r} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
            rows.append((lineno, row))
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"pairs file {str(path)!r} has no pairs")
    return rows


def read_pairs(path: str | os.PathLike, limit: int | None = None) -> list[tuple[str, str]]:
    """Prompt/completion pairs from a JSONL file with `prompt` and `completion` fields (for example the
    generations.jsonl of `prerl-trl eval`)."""
    pairs = []
    for lineno, row in _read_rows(path, limit):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not isinstance(
            row.get("completion"), str
        ):
            raise ValueError(f"{path}:{lineno}: each line needs string 'prompt' and 'completion' fields")
        pairs.append((row["prompt"], row["completion"]))
    return pairs


def read_conversations(path: str | os.PathLike, limit: int | None = None) -> list[list[dict]]:
    """The `messages` field (the conversation the prompt was rendered from) of each line of a pairs file: what a chat
    frame is built from."""
    conversations = []
    for lineno, row in _read_rows(path, limit):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages:
            raise ValueError(
                f"{path}:{lineno}: a chat-frame context needs a 'messages' field (the conversation the prompt was "
                "rendered from, a list of {role, content}) on each line; or use --context token"
            )
        conversations.append(messages)
    return conversations


def _rollout_pairs(args: argparse.Namespace, tokenizer: Any, output_dir: Path
                   ) -> tuple[list[tuple[str, str]], list[list[dict]], Any]:
    """One rollout per problem (cycling through the problems until --num-samples), cached in output_dir; the pairs,
    the conversation each prompt was rendered from, and the model when it was loaded to generate."""
    from .evaluation import (
        CACHE_FILE,
        GenerationCache,
        WorkItem,
        check_settings,
        load_benchmark,
        render_prompts,
        resolve_backend,
        run_generation,
    )

    backend = resolve_backend(args.backend)
    bench = load_benchmark(args.dataset, split=args.split, system_prompt=args.system_prompt or None,
                           problem_column=args.problem_column, answer_column=args.answer_column,
                           solution_column=args.solution_column)
    render_prompts(bench, tokenizer, chat_template=not args.no_chat_template, thinking=args.thinking)
    settings = {"model": str(args.model), "temperature": args.temperature, "top_p": args.top_p,
                "max_tokens": args.max_tokens, "n": args.num_samples, "seed": args.seed, "backend": backend,
                "system_prompt": args.system_prompt, "chat_template": not args.no_chat_template,
                "thinking": args.thinking}
    check_settings(output_dir, settings, overwrite=args.overwrite)
    cache = GenerationCache(output_dir / CACHE_FILE)
    work = []
    for i in range(args.num_samples):
        index, sample = i % len(bench), i // len(bench)
        work.append(WorkItem((bench.name, index, sample), bench.prompts[index], bench.prompt_ids[index]))
    hf_model = run_generation(work, cache, backend=backend, model=args.model, tokenizer=tokenizer,
                              temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                              batch_size=args.batch_size, seed=args.seed, dtype=args.dtype,
                              gpu_memory_utilization=args.gpu_memory_utilization, progress=not args.no_progress)
    pairs = []
    for w in work:
        rec = cache.get(w.key)
        pairs.append((rec["prompt"], rec["completion"]))
    return pairs, [bench.messages[w.key[1]] for w in work], hf_model


def build_parser() -> argparse.ArgumentParser:
    from .evaluation import DEFAULT_MAX_TOKENS, SYSTEM_PROMPT, _positive_int
    from .pretrain_space import PRETRAIN_CONTEXTS

    p = argparse.ArgumentParser(
        prog="prerl-trl grad-align",
        description="Inner product and cosine of grad log P(y) and grad log P(y|x) on rollouts (paper: Qwen3-4B, "
        "AMC23, 400 rollouts). Writes alignment.jsonl (one line per pair) and summary.json to --output-dir.",
    )
    p.add_argument("--model", required=True, help="model directory or Hub id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="benchmark name or local file: generate rollouts (cycling through problems)")
    src.add_argument("--pairs", help="JSONL with 'prompt' and 'completion' fields (e.g. eval's generations.jsonl)")
    p.add_argument("--num-samples", type=_positive_int, default=400, help="number of pairs (default 400)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--context", choices=PRETRAIN_CONTEXTS, default="token",
                   help="what y is scored after in pre-train space, as prerl_context in training: 'token' (default, "
                   "the paper's), 'chat_frame' or 'chat_frame_history' (with --pairs: each line needs 'messages')")
    p.add_argument("--context-token", default=None,
                   help="pre-train-space context token (--context token); default BOS, else <|im_start|>, else EOS")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=_positive_int, default=DEFAULT_MAX_TOKENS)
    p.add_argument("--backend", choices=("auto", "vllm", "transformers"), default="auto",
                   help="rollout generation backend")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.4,
                   help="vLLM only; leave room for the gradient pass (default 0.4)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system-prompt", default=SYSTEM_PROMPT)
    p.add_argument("--no-chat-template", action="store_true")
    p.add_argument("--thinking", action="store_true")
    p.add_argument("--split", default=None)
    p.add_argument("--problem-field", "--problem_field", "--problem-column", dest="problem_column", default=None,
                   help="problem column of a local file (as in train and eval; --problem-column is an alias)")
    p.add_argument("--answer-field", "--answer_field", "--answer-column", dest="answer_column", default=None,
                   help="gold-answer column of a local file (as in train and eval; --answer-column is an alias)")
    p.add_argument("--solution-column", default=None, help="worked-solution column whose last \\boxed{} is the answer")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="auto: bfloat16 on a GPU, float32 on the CPU")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass (long responses on large models)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the rollouts cached in --output-dir (made with other settings or another model)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """`prerl-trl grad-align`: returns the exit code (2 on bad input)."""
    from .evaluation import library_progress_bars

    args = build_parser().parse_args(argv)
    with library_progress_bars(not args.no_progress):  # --no-progress: no loading bars either
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .evaluation import EvaluationError, load_hf_model, load_tokenizer

    output_dir = Path(args.output_dir)
    try:
        tokenizer = load_tokenizer(args.model)
        if args.context != "token" and args.context_token is not None:
            raise ValueError(f"--context-token is only used with --context token, not {args.context!r}")
        if args.context != "token" and args.no_chat_template:
            raise ValueError(f"--context {args.context} is built from the chat template: drop --no-chat-template")
        context_id = context_token_id(tokenizer, args.context_token)  # fail before any generation
        output_dir.mkdir(parents=True, exist_ok=True)
        hf_model = None
        if args.pairs:
            pairs = read_pairs(args.pairs, limit=args.num_samples)
            conversations = read_conversations(args.pairs, limit=args.num_samples) if args.context != "token" else None
        else:
            pairs, conversations, hf_model = _rollout_pairs(args, tokenizer, output_dir)
    except (EvaluationError, ValueError, OSError) as err:
        print(f"prerl-trl grad-align: error: {err}", file=sys.stderr)
        return 2
    if hf_model is None:
        hf_model = load_hf_model(args.model, dtype=args.dtype)

    # Resume: reuse results of pairs already in alignment.jsonl (same pair text and context token).
    out_path = output_dir / PAIRS_FILE
    done: dict[int, dict[str, Any]] = {}
    if out_path.exists():
        with open(out_path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    done[int(row["pair"])] = row
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    context_key = args.context_token if args.context == "token" else args.context
    hashes = [_pair_hash(p, c, context_key) for p, c in pairs]
    todo = [i for i, h in enumerate(hashes) if done.get(i, {}).get("pair_hash") != h]

    with open(out_path, "a", encoding="utf-8") as f:

        def write(j: int, result: dict[str, float]) -> None:
            i = todo[j]
            row = {"pair": i, "pair_hash": hashes[i], **result, "prompt": pairs[i][0], "completion": pairs[i][1]}
            done[i] = row
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()

        try:
            gradient_alignment(hf_model, tokenizer, [pairs[i][0] for i in todo], [pairs[i][1] for i in todo],
                               context_token=args.context_token, context=args.context,
                               conversations=None if args.context == "token" else [conversations[i] for i in todo],
                               progress=not args.no_progress, on_result=write,
                               gradient_checkpointing=args.gradient_checkpointing)
        except ValueError as err:
            print(f"prerl-trl grad-align: error: {err}", file=sys.stderr)
            return 2
    summary = summarize_alignment([done[i] for i in range(len(pairs))])
    summary["context"] = args.context
    summary["context_token"] = tokenizer.convert_ids_to_tokens(context_id) if args.context == "token" else None
    summary["model"] = str(args.model)
    with open(output_dir / SUMMARY_FILE, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(format_summary(summary))
    print(f"\nwrote {out_path} and {output_dir / SUMMARY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
