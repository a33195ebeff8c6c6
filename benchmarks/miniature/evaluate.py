"""Held-out measures: avg@k and pass@k (prerl_trl.evaluation), response length, behaviour counts
(prerl_trl.behaviors), and gradient alignment on the base model (prerl_trl.diagnostics)."""

from __future__ import annotations

import torch

from prerl_trl.behaviors import mean_behavior_counts
from prerl_trl.diagnostics import gradient_alignment, summarize_alignment
from prerl_trl.evaluation import avg_at_n, mean_pass_at_k, pass_at_k_ks

from .task import Problem, exact_match_reward


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], k: int, max_new_tokens: int, seed: int, batch_size: int = 512,
           bf16: bool = False):
    """k samples per prompt at temperature 1.0 (top_p 1, no top_k), as plain strings; `seed` fixes the draw without
    touching the caller's RNG state; `bf16`: under bf16 autocast on a GPU (as training with `bf16=True`). Returns
    (texts grouped per prompt, lengths in tokens grouped per prompt)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts, lengths = [], []
    devices = [device] if device.type == "cuda" else []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")
    with torch.random.fork_rng(devices=devices), autocast:
        torch.manual_seed(seed)
        per_batch = max(1, batch_size // k)
        for start in range(0, len(prompts), per_batch):
            enc = tokenizer(prompts[start : start + per_batch], return_tensors="pt", padding=True,
                            padding_side="left", add_special_tokens=False).to(device)
            out = model.generate(
                **enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, num_return_sequences=k,
                max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            )
            new = out[:, enc["input_ids"].size(1) :]
            ends = (new == tokenizer.eos_token_id).int()
            has_end = ends.any(dim=1)
            length = torch.where(has_end, ends.argmax(dim=1) + 1, torch.full_like(has_end, new.size(1), dtype=torch.long))
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for i in range(0, len(decoded), k):
                texts.append(decoded[i : i + k])
                lengths.append(length[i : i + k].tolist())
    model.train(was_training)
    return texts, lengths


def evaluate(model, tokenizer, problems: list[Problem], k: int, max_new_tokens: int, seed: int,
             bf16: bool = False) -> dict:
    """avg@k, pass@k for k = 1, 2, 4, ..., k, mean response length (tokens), mean behaviour counts, and the number of
    correct samples per problem (`correct`, in problem order: what a bootstrap over problems resamples)."""
    texts, lengths = sample(model, tokenizer, [p.prompt for p in problems], k, max_new_tokens, seed, bf16=bf16)
    correct = [int(sum(exact_match_reward(t, [p.answer] * k))) for t, p in zip(texts, problems, strict=True)]
    flat = [t for group in texts for t in group]
    behaviors = mean_behavior_counts(flat)
    return {
        f"avg@{k}": avg_at_n(correct, k),
        "pass@k": {str(j): mean_pass_at_k(correct, k, j) for j in pass_at_k_ks(k)},
        "response_length": sum(map(sum, lengths)) / len(flat),
        "transition": behaviors["transition"],
        "reflection": behaviors["reflection"],
        "example": flat[0],
        "correct": correct,  # per problem, out of k: for bootstraps over problems
    }


def base_alignment(model, tokenizer, problems: list[Problem], num_pairs: int, max_new_tokens: int, seed: int) -> dict:
    """Gradient alignment of log P(y) and log P(y|x) on the base model, over `num_pairs` of its own rollouts (one per
    held-out problem), with the package's default context token (the BOS)."""
    chosen = problems[:num_pairs]
    texts, _ = sample(model, tokenizer, [p.prompt for p in chosen], 1, max_new_tokens, seed)
    completions = [group[0] if group[0].strip() else " " for group in texts]
    completions = [c + tokenizer.eos_token for c in completions]
    pairs = gradient_alignment(model, tokenizer, [p.prompt for p in chosen], completions)
    rewards = exact_match_reward(completions, [p.answer for p in chosen])
    summary = summarize_alignment(pairs)
    summary["mean_cosine_correct"] = _mean([r["cosine"] for r, w in zip(pairs, rewards, strict=True) if w == 1.0])
    summary["mean_cosine_wrong"] = _mean([r["cosine"] for r, w in zip(pairs, rewards, strict=True) if w == 0.0])
    # Per-token log-probs, pooled over all completion tokens: what the base assigns to its own rollouts with and
    # without the question.
    tokens = sum(r["num_completion_tokens"] for r in pairs)
    for key in ("logp_conditional", "logp_marginal"):
        summary[f"{key}_per_token"] = sum(r[key] for r in pairs) / tokens
    summary["accuracy"] = sum(rewards) / len(rewards)
    return summary


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
