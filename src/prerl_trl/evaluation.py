"""Benchmark evaluation: avg@n and unbiased pass@k on math benchmarks (`prerl-trl eval`).

The default protocol is the paper's (arXiv 2604.14142, its evaluation setup): n = 32 samples per problem at temperature 1.0 and top_p 1.0,
the system prompt "Please reason step by step, and put your final answer within \\boxed{}." and the model's chat template
(thinking disabled). avg@n is the mean accuracy over all n samples of all problems; pass@k is the unbiased estimator
1 - C(n-c, k) / C(n, k) averaged over problems.

Generation uses vLLM's offline engine when vLLM is installed and a GPU is present, else transformers `generate` in
batches. Every finished batch is appended to `generations.jsonl` in the output directory and flushed, so a re-run
with the same settings resumes where the last one stopped and regenerates nothing it already has.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .behaviors import BEHAVIORS, count_reasoning_behaviors
from .data import SYSTEM_PROMPT

DEFAULT_N = 32
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
DEFAULT_MAX_TOKENS = 8192
CACHE_FILE = "generations.jsonl"
SETTINGS_FILE = "settings.json"
RESULTS_FILE = "results.json"
PLOT_FILE = "pass_at_k.png"
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")
#: Answer checks `--verifier` can name (reward functions of `prerl_trl.rewards`); not a cache key.
VERIFIERS = ("math_accuracy", "math_string_match")
# Settings that change what a cached generation means: a cache made with other values is not reused.
CACHE_KEY_SETTINGS = ("model", "temperature", "top_p", "max_tokens")


class EvaluationError(ValueError):
    """Bad input to the evaluation: unknown dataset, missing column, incompatible cache, ..."""


# --------------------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: 1 - C(n-c, k) / C(n, k).

    The probability that at least one of k samples drawn without replacement from the n generated ones is correct,
    given that c of the n are correct. Computed in the numerically stable product form
    1 - prod_{i=n-c+1}^{n} (1 - k / i) (Chen et al. 2021), so large n does not overflow.

    Raises:
        ValueError: n < 1, c outside [0, n], or k outside [1, n].
    """
    n, c, k = _check_int("n", n), _check_int("c", c), _check_int("k", k)
    if n < 1:
        raise ValueError(f"pass@k needs n >= 1 samples, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"the number of correct samples c must be in [0, n={n}], got c={c}")
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}")
    if k > n:
        raise ValueError(f"pass@k needs k <= n, got k={k} > n={n}: generate at least k samples per problem")
    if n - c < k:
        return 1.0
    if k == 1:  # exactly c / n, so pass@1 and avg@n agree to the last digit
        return c / n
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_n(correct_counts: Sequence[int], n: int) -> float:
    """avg@n: the mean accuracy over n samples per problem, i.e. mean_p c_p / n."""
    n = _check_int("n", n)
    if n < 1:
        raise ValueError(f"avg@n needs n >= 1, got n={n}")
    if not correct_counts:
        raise ValueError("avg@n needs at least one problem")
    return sum(correct_counts) / (n * len(correct_counts))


def avg_at_n_ci(correct_counts: Sequence[int], n: int, z: float = 1.96) -> tuple[float, float, float]:
    """avg@n and its confidence interval, (avg, low, high): mean +- z standard errors of the per-problem accuracies
    c_p / n (problems taken as a sample, so both the choice of problems and the sampling of answers count). z = 1.96
    is a 95% interval under the normal approximation; with few problems it is optimistic."""
    avg = avg_at_n(correct_counts, n)
    half = z * _standard_error([c / n for c in correct_counts])
    return avg, avg - half, avg + half


def paired_difference_ci(
    before: Sequence[int], after: Sequence[int], n: int, z: float = 1.96
) -> tuple[float, float, float]:
    """avg@n of `after` minus avg@n of `before` on the same problems, with its confidence interval from the
    per-problem differences (a paired interval: much narrower than two separate ones when problems differ in
    difficulty)."""
    if len(before) != len(after):
        raise ValueError(f"paired counts need the same problems, got {len(before)} and {len(after)}")
    diffs = [(a - b) / n for b, a in zip(before, after, strict=True)]
    mean = avg_at_n(after, n) - avg_at_n(before, n)
    half = z * _standard_error(diffs)
    return mean, mean - half, mean + half


def _standard_error(values: Sequence[float]) -> float:
    if len(values) < 2:
        raise ValueError(f"a confidence interval needs at least two problems, got {len(values)}")
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return (variance / len(values)) ** 0.5


def pass_at_k_ks(n: int) -> list[int]:
    """The k at which pass@k is reported: 1, 2, 4, ... up to n, and n itself."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return ks


def mean_pass_at_k(correct_counts: Sequence[int], n: int, k: int) -> float:
    """pass@k of a benchmark: the per-problem unbiased estimator averaged over problems."""
    if not correct_counts:
        raise ValueError("pass@k needs at least one problem")
    return sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts)


# --------------------------------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Benchmark:
    """One benchmark: its name and, per problem, the chat messages and the gold answer."""

    name: str
    messages: list[list[dict[str, str]]]
    answers: list[str]
    prompts: list[str] = field(default_factory=list)  # rendered prompt text, filled by `render_prompts`
    prompt_ids: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.answers)


def _known_datasets() -> list[str]:
    from .data import KNOWN_DATASETS

    return sorted(KNOWN_DATASETS)


def _is_local_spec(spec: str) -> bool:
    return Path(spec).suffix.lower() in LOCAL_SUFFIXES or Path(spec).exists()


def benchmark_name(spec: str) -> str:
    """The name a dataset argument is reported (and cached) under: the short name, the file stem or the hub id's
    last part."""
    if _is_local_spec(spec):
        return Path(spec).stem if Path(spec).suffix else Path(spec).name
    return spec.rstrip("/").split("/")[-1].lower()


def load_benchmark(
    spec: str,
    *,
    split: str | None = None,
    system_prompt: str | None = SYSTEM_PROMPT,
    problem_column: str | None = None,
    answer_column: str | None = None,
    limit: int | None = None,
    solution_column: str | None = None,
) -> Benchmark:
    """Load a benchmark through `prerl_trl.data.load_math_dataset`: a short name (aime24, aime25, amc23, math500,
    ...), a local json / jsonl / parquet file with `problem` (or `question`) and `answer` columns, or a hub id.

    Rows whose gold answer cannot be extracted are dropped by the loader (and logged)."""
    from .data import load_math_dataset

    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit must be >= 1, got {limit}")
    if Path(spec).suffix.lower() in LOCAL_SUFFIXES and not Path(spec).is_file():
        raise EvaluationError(f"dataset file {spec!r} does not exist")
    try:
        ds = load_math_dataset(
            spec, split, problem_field=problem_column, answer_field=answer_column, solution_field=solution_column,
            conversational=True,
            system_prompt=system_prompt, max_samples=limit,
        )
    except ValueError as err:
        raise EvaluationError(f"dataset {spec!r}: {err}") from err
    if len(ds) == 0:
        raise EvaluationError(f"dataset {spec!r} has no problems with a gold answer")
    return Benchmark(
        name=benchmark_name(spec),
        messages=[[dict(m) for m in prompt] for prompt in ds["prompt"]],
        answers=[str(a) for a in ds["answer"]],
    )


def render_prompts(benchmark: Benchmark, tokenizer: Any, *, chat_template: bool = True, thinking: bool = False) -> None:
    """Fill `benchmark.prompts` (text) and `benchmark.prompt_ids` with the chat-templated prompts."""
    use_template = chat_template and getattr(tokenizer, "chat_template", None)
    if chat_template and not use_template:
        warnings.warn("the tokenizer has no chat template: prompts are plain text (system prompt, then problem)",
                      stacklevel=2)
    benchmark.prompts, benchmark.prompt_ids = [], []
    for messages in benchmark.messages:
        if use_template:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n"
            ids = tokenizer(text)["input_ids"]
        benchmark.prompts.append(text)
        benchmark.prompt_ids.append(list(ids))


# --------------------------------------------------------------------------------------------------------------------
# Generation cache
# --------------------------------------------------------------------------------------------------------------------


def _prompt_hash(prompt: str) -> str:
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


Key = tuple[str, int, int]  # (dataset, problem index, sample index)


class GenerationCache:
    """An append-only JSONL of generations keyed by (dataset, problem index, sample index).

    Each line: `{"dataset", "index", "sample", "prompt_hash", "prompt", "completion", "num_tokens",
    "finish_reason"}`. Lines are flushed (and fsynced) after every batch; a line cut short by a crash is skipped.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[Key, dict[str, Any]] = {}
        self.skipped_lines = 0
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        key = (str(rec["dataset"]), int(rec["index"]), int(rec["sample"]))
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        self.skipped_lines += 1
                        continue
                    self.records.setdefault(key, rec)
        if self.skipped_lines:
            warnings.warn(f"{self.path}: skipped {self.skipped_lines} unreadable line(s) (an interrupted write?)",
                          stacklevel=2)

    def __contains__(self, key: Key) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.records.get(key)

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
        with open(self.path, "a", encoding="utf-8") as f:
            if needs_newline:
                f.write("\n")
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            with contextlib.suppress(OSError):
                os.fsync(f.fileno())
        for rec in records:
            self.records.setdefault((str(rec["dataset"]), int(rec["index"]), int(rec["sample"])), rec)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


@dataclass
class WorkItem:
    """One sample to generate."""

    key: Key
    prompt: str
    prompt_ids: list[int]


# --------------------------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------------------------


def vllm_available() -> bool:
    """True when vLLM can be imported and a CUDA GPU is present."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def resolve_backend(backend: str) -> str:
    if backend not in ("auto", "vllm", "transformers"):
        raise EvaluationError(f"unknown backend {backend!r}: use auto, vllm or transformers")
    if backend == "auto":
        return "vllm" if vllm_available() else "transformers"
    if backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise EvaluationError("--backend vllm needs vLLM: pip install 'prerl-trl[vllm]'")
    return backend


@contextlib.contextmanager
def library_progress_bars(enabled: bool):
    """With `enabled=False`, hide the progress bars of datasets (generate, map, filter) and transformers /
    huggingface_hub (weight loading, downloads) inside the block, then restore their previous state."""
    if enabled:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_on, transformers_on = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_on:
            datasets.enable_progress_bars()
        if transformers_on:
            hf_logging.enable_progress_bar()


def check_model_source(model: str, option: str = "--model") -> None:
    """Fail with one clear line when `model` is neither a local model directory nor a possible Hub id.

    A name that could be a Hub id (`Qwen/Qwen3-4B`) is left to transformers, whose error for a missing repo is
    already one line."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(model).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise FileNotFoundError(f"{option} {model!r} is a file: pass the model's directory (the one with config.json)")
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise FileNotFoundError(
            f"{option} {model!r}: no such local directory, and not a Hub id (like Qwen/Qwen3-4B). Check the path."
        ) from None


def load_tokenizer(model: str, **kwargs: Any) -> Any:
    """`AutoTokenizer`, except for a local directory whose tokenizer_config.json declares a generic
    `TokenizersBackend` / `PreTrainedTokenizerFast`: transformers 5 then still picks the model type's tokenizer class
    (for a Qwen2 config, `Qwen2Tokenizer`, which rebuilds a byte-level BPE and loses a custom tokenizer.json)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    check_model_source(model)
    tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
    config_file = Path(model) / "tokenizer_config.json"
    if config_file.is_file() and (Path(model) / "tokenizer.json").is_file():
        with open(config_file, encoding="utf-8") as f:
            declared = json.load(f).get("tokenizer_class")
        if declared in ("TokenizersBackend", "PreTrainedTokenizerFast") and type(tokenizer).__name__ != declared:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(model, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_hf_model(model: str, *, dtype: str = "auto", device: str | None = None) -> Any:
    """A transformers causal LM in eval mode: bf16 on a GPU and fp32 on the CPU unless `dtype` says otherwise."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    hf_model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
    return hf_model.to(device).eval()


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v not in ids:
                ids.append(int(v))
    return ids


def generate_transformers(
    model: Any,
    tokenizer: Any,
    work: Sequence[WorkItem],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    batch_size: int,
    on_batch: Callable[[list[dict[str, Any]]], None],
    progress: bool = True,
) -> None:
    """Generate `work` with `model.generate` in batches of `batch_size` sequences (left padded), calling
    `on_batch(records)` after each batch."""
    import torch
    from tqdm.auto import tqdm

    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    device = next(model.parameters()).device
    from transformers import GenerationConfig

    # A fresh config, so that the model's own generation defaults (top_k, repetition penalty, ...) do not leak in.
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else {}
    generation_config = GenerationConfig(
        max_new_tokens=max_tokens, eos_token_id=eos_ids or None, pad_token_id=pad_id, **sampling
    )
    bar = tqdm(total=len(work), desc="generating", unit="seq", disable=not progress)
    try:
        for start in range(0, len(work), batch_size):
            batch = work[start : start + batch_size]
            width = max(len(w.prompt_ids) for w in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, w in enumerate(batch):
                input_ids[row, width - len(w.prompt_ids) :] = torch.tensor(w.prompt_ids, dtype=torch.long)
                attention[row, width - len(w.prompt_ids) :] = 1
            with torch.no_grad():
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    generation_config=generation_config,
                )
            records = []
            for row, w in enumerate(batch):
                new = out[row, width:].tolist()
                stop = next((i for i, t in enumerate(new) if t in eos_ids), None)
                tokens = new if stop is None else new[: stop + 1]
                records.append(
                    _record(w, tokenizer.decode(tokens, skip_special_tokens=True), len(tokens),
                            "length" if stop is None else "stop")
                )
            on_batch(records)
            bar.update(len(batch))
    finally:
        bar.close()


def generate_vllm(
    model: str,
    work: Sequence[WorkItem],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    on_batch: Callable[[list[dict[str, Any]]], None],
    prompts_per_call: int = 64,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    progress: bool = True,
) -> None:
    """Generate `work` with vLLM's offline engine, one call per `prompts_per_call` distinct prompts, calling
    `on_batch(records)` after each call. (Not exercised by the CPU test suite.)"""
    from tqdm.auto import tqdm
    from vllm import LLM, SamplingParams

    groups: dict[tuple[int, ...], list[WorkItem]] = {}
    for w in work:
        groups.setdefault(tuple(w.prompt_ids), []).append(w)
    llm = LLM(model=model, seed=seed, tensor_parallel_size=tensor_parallel_size,
              gpu_memory_utilization=gpu_memory_utilization)
    items = list(groups.values())
    bar = tqdm(total=len(work), desc="generating (vLLM)", unit="seq", disable=not progress)
    try:
        for start in range(0, len(items), prompts_per_call):
            chunk = items[start : start + prompts_per_call]
            params = [
                SamplingParams(n=len(ws), temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                               seed=seed + start + i)
                for i, ws in enumerate(chunk)
            ]
            outputs = llm.generate([{"prompt_token_ids": ws[0].prompt_ids} for ws in chunk], params, use_tqdm=False)
            records = []
            for ws, out in zip(chunk, outputs, strict=True):
                for w, o in zip(ws, out.outputs, strict=True):
                    records.append(_record(w, o.text, len(o.token_ids), o.finish_reason or "stop"))
            on_batch(records)
            bar.update(sum(len(ws) for ws in chunk))
    finally:
        bar.close()
        del llm
        _free_gpu()


def _free_gpu() -> None:
    import gc

    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _record(w: WorkItem, completion: str, num_tokens: int, finish_reason: str) -> dict[str, Any]:
    dataset, index, sample = w.key
    return {
        "dataset": dataset,
        "index": index,
        "sample": sample,
        "prompt_hash": _prompt_hash(w.prompt),
        "prompt": w.prompt,
        "completion": completion,
        "num_tokens": num_tokens,
        "finish_reason": finish_reason,
    }


def run_generation(
    work: Sequence[WorkItem],
    cache: GenerationCache,
    *,
    backend: str,
    model: str,
    tokenizer: Any,
    hf_model: Any = None,
    temperature: float,
    top_p: float,
    max_tokens: int,
    batch_size: int,
    seed: int,
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    progress: bool = True,
) -> Any:
    """Generate the items of `work` not yet in `cache`, appending each finished batch to it.

    Returns the transformers model it used (loaded when `hf_model` is None), or None for vLLM / nothing to do."""
    todo = [w for w in work if w.key not in cache]
    if not todo:
        return hf_model
    if backend == "vllm":
        generate_vllm(model, todo, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                      on_batch=cache.add, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, progress=progress)
        return None
    import torch

    torch.manual_seed(seed + len(cache))  # a resumed run does not replay the first run's random stream
    if hf_model is None:
        hf_model = load_hf_model(model, dtype=dtype)
    generate_transformers(hf_model, tokenizer, todo, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                          batch_size=batch_size, on_batch=cache.add, progress=progress)
    return hf_model


# --------------------------------------------------------------------------------------------------------------------
# Scoring and reporting
# --------------------------------------------------------------------------------------------------------------------


def score_completions(completions: list[str], answer: str, verifier: str = "math_accuracy") -> list[bool | None]:
    """Check each completion's final answer against `answer` with the reward named `verifier`
    (`math_accuracy`: math-verify, with its time limit; `math_string_match`: the Hendrycks-MATH string match).

    None marks a gold answer the verifier cannot parse."""
    from . import rewards

    if verifier not in VERIFIERS:
        raise EvaluationError(f"verifier={verifier!r} is unknown; use one of {', '.join(VERIFIERS)}")
    scores = rewards.REWARD_FUNCTIONS[verifier](completions, answer=[answer] * len(completions))
    return [None if s is None else bool(s > 0.5) for s in scores]


def summarize_benchmark(
    name: str, answers: Sequence[str], samples: Sequence[Sequence[dict[str, Any]]], n: int,
    verifier: str = "math_accuracy",
) -> dict[str, Any]:
    """Score the n samples of each problem and compute avg@n, pass@k, mean length and behaviour counts."""
    problems, counts, lengths, truncated = [], [], [], 0
    behaviors = dict.fromkeys(BEHAVIORS, 0)
    unparsable = 0
    for index, (answer, recs) in enumerate(zip(answers, samples, strict=True)):
        scores = score_completions([r["completion"] for r in recs], answer, verifier)
        if any(s is None for s in scores):
            unparsable += 1
        correct = sum(1 for s in scores if s)
        counts.append(correct)
        problems.append({"index": index, "answer": answer, "correct": correct, "n": len(recs),
                         "gold_unparsable": any(s is None for s in scores)})
        for r in recs:
            lengths.append(int(r["num_tokens"]))
            truncated += r.get("finish_reason") == "length"
            for key, value in count_reasoning_behaviors(r["completion"]).items():
                behaviors[key] += value
    if unparsable:
        warnings.warn(f"{name}: the verifier could not parse the gold answer of {unparsable} problem(s); "
                      "they count as wrong", stacklevel=2)
    total = len(lengths)
    return {
        "num_problems": len(counts),
        "n": n,
        "num_completions": total,
        "avg_at_n": avg_at_n(counts, n),
        "pass_at_k": {str(k): mean_pass_at_k(counts, n, k) for k in pass_at_k_ks(n)},
        "mean_response_tokens": sum(lengths) / total,
        "truncated_frac": truncated / total,
        "behaviors": {key: value / total for key, value in behaviors.items()},
        "problems": problems,
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table, accuracies in percent."""
    n = results["settings"]["n"]
    ks = pass_at_k_ks(n)
    header = ["benchmark", "problems", f"avg@{n}", *(f"pass@{k}" for k in ks), "mean tokens", *BEHAVIORS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    rows = list(results["benchmarks"].items())
    if len(rows) > 1:
        rows.append(("mean", results["mean"]))
    for name, b in rows:
        cells = [name, str(b["num_problems"]), f"{100 * b['avg_at_n']:.2f}%"]
        cells += [f"{100 * b['pass_at_k'][str(k)]:.2f}%" for k in ks]
        cells += [f"{b['mean_response_tokens']:.1f}", *(f"{b['behaviors'][key]:.2f}" for key in BEHAVIORS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pass_at_k(results: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Save a pass@k curve per benchmark (log2 x axis, percent y axis). Returns None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no pass@k plot (pip install matplotlib)", stacklevel=2)
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, b in results["benchmarks"].items():
        ks = sorted(int(k) for k in b["pass_at_k"])
        ax.plot(ks, [100 * b["pass_at_k"][str(k)] for k in ks], marker="o", label=name)
    ks = pass_at_k_ks(results["settings"]["n"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"pass@k: {Path(str(results['settings']['model'])).name}, T={results['settings']['temperature']}")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _same_setting(key: str, old: Any, new: Any) -> bool:
    if key == "model" and isinstance(old, str) and isinstance(new, str):  # `runs/ckpt/` is `runs/ckpt`
        return os.path.normpath(old) == os.path.normpath(new)
    return old == new


def _check_settings(output_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    path = output_dir / SETTINGS_FILE
    cache = output_dir / CACHE_FILE
    if overwrite:
        for p in (path, cache):
            if p.exists():
                p.unlink()
    if path.exists():
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        diff = {k: (old.get(k), settings[k]) for k in CACHE_KEY_SETTINGS if not _same_setting(k, old.get(k), settings[k])}
        if diff and cache.exists():
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise EvaluationError(
                f"{output_dir} holds generations made with other settings ({changes}). Use another --output-dir, "
                "or --overwrite to discard them."
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def _library_bars_follow_progress(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run `func` with the libraries' progress bars hidden when it is called with `progress=False`."""

    @functools.wraps(func)
    def wrapper(*args: Any, progress: bool = True, **kwargs: Any) -> Any:
        with library_progress_bars(progress):
            return func(*args, progress=progress, **kwargs)

    return wrapper


@_library_bars_follow_progress
def evaluate(
    model: str,
    datasets: Sequence[str],
    *,
    output_dir: str | os.PathLike,
    n: int = DEFAULT_N,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    backend: str = "auto",
    batch_size: int = 32,
    seed: int = 0,
    system_prompt: str | None = SYSTEM_PROMPT,
    chat_template: bool = True,
    thinking: bool = False,
    split: str | None = None,
    limit: int | None = None,
    problem_column: str | None = None,
    answer_column: str | None = None,
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    overwrite: bool = False,
    plot: bool = True,
    progress: bool = True,
    verifier: str = "math_accuracy",
) -> dict[str, Any]:
    """Evaluate `model` on `datasets` (names from `prerl_trl.data` or local files) and write results.json,
    pass_at_k.png and the generation cache to `output_dir`. Returns the results dict.

    Accuracies in the returned dict are fractions in [0, 1]."""
    n = _check_int("n", n)
    if n < 1:
        raise EvaluationError(f"--n must be >= 1, got {n}")
    if max_tokens < 1:
        raise EvaluationError(f"--max-tokens must be >= 1, got {max_tokens}")
    if batch_size < 1:
        raise EvaluationError(f"--batch-size must be >= 1, got {batch_size}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise EvaluationError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
    if not datasets:
        raise EvaluationError("pass at least one --dataset")
    check_model_source(model)
    backend = resolve_backend(backend)
    benchmarks = [
        load_benchmark(spec, split=split, system_prompt=system_prompt, problem_column=problem_column,
                       answer_column=answer_column, limit=limit)
        for spec in datasets
    ]
    names = [b.name for b in benchmarks]
    if len(set(names)) != len(names):
        raise EvaluationError(f"two datasets share a name ({names}): rename one of the files")

    output_dir = Path(output_dir)
    settings = {"model": str(model), "temperature": float(temperature), "top_p": float(top_p),
                "max_tokens": int(max_tokens), "n": n, "seed": seed, "backend": backend,
                "system_prompt": system_prompt, "chat_template": chat_template, "thinking": thinking,
                "verifier": verifier}
    _check_settings(output_dir, settings, overwrite)

    tokenizer = load_tokenizer(model)
    work: list[WorkItem] = []
    cache = GenerationCache(output_dir / CACHE_FILE)
    for bench in benchmarks:
        render_prompts(bench, tokenizer, chat_template=chat_template, thinking=thinking)
        for index, (prompt, ids) in enumerate(zip(bench.prompts, bench.prompt_ids, strict=True)):
            for sample in range(n):
                key = (bench.name, index, sample)
                rec = cache.get(key)
                if rec is not None and rec.get("prompt_hash") != _prompt_hash(prompt):
                    raise EvaluationError(
                        f"{cache.path}: the cached prompt of {bench.name} problem {index} differs from the current "
                        "one (another dataset file, system prompt or chat template?). Use another --output-dir, or "
                        "--overwrite."
                    )
                work.append(WorkItem(key, prompt, ids))
    run_generation(work, cache, backend=backend, model=model, tokenizer=tokenizer, temperature=temperature,
                   top_p=top_p, max_tokens=max_tokens, batch_size=batch_size, seed=seed, dtype=dtype,
                   tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                   progress=progress)

    results: dict[str, Any] = {"settings": settings, "benchmarks": {}}
    for bench in benchmarks:
        samples = [[cache.get((bench.name, i, s)) for s in range(n)] for i in range(len(bench))]
        results["benchmarks"][bench.name] = summarize_benchmark(bench.name, bench.answers, samples, n, verifier)
    results["mean"] = _mean_over_benchmarks(results["benchmarks"])
    _write_json(output_dir / RESULTS_FILE, results)
    if plot:
        plot_pass_at_k(results, output_dir / PLOT_FILE)
    return results


def _mean_over_benchmarks(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over benchmarks of the accuracies (the paper's "avg@32 over AIME24, AIME25 and AMC23");
    lengths and behaviour counts are per completion over all benchmarks."""
    bs = list(benchmarks.values())
    total = sum(b["num_completions"] for b in bs)
    return {
        "num_problems": sum(b["num_problems"] for b in bs),
        "num_completions": total,
        "avg_at_n": sum(b["avg_at_n"] for b in bs) / len(bs),
        "pass_at_k": {k: sum(b["pass_at_k"][k] for b in bs) / len(bs) for k in bs[0]["pass_at_k"]},
        "mean_response_tokens": sum(b["mean_response_tokens"] * b["num_completions"] for b in bs) / total,
        "truncated_frac": sum(b["truncated_frac"] * b["num_completions"] for b in bs) / total,
        "behaviors": {key: sum(b["behaviors"][key] * b["num_completions"] for b in bs) / total for key in BEHAVIORS},
    }


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    known = _known_datasets()
    p = argparse.ArgumentParser(
        prog="prerl-trl eval",
        description="avg@n and pass@k of a model on math benchmarks, with the paper's protocol by default "
        "(n=32, temperature 1.0, top_p 1.0, its system prompt and the chat template).",
    )
    p.add_argument("--model", required=True, help="model directory or Hub id")
    p.add_argument("--dataset", action="append", required=True, metavar="NAME_OR_FILE",
                   help="a known benchmark (" + ", ".join(known) + "), a local .json/.jsonl/.parquet file with "
                   "'problem' (or 'question') and 'answer' columns, or a hub id; repeatable")
    p.add_argument("--output-dir", required=True, help="where results.json, pass_at_k.png and the cache go")
    p.add_argument("--n", type=_positive_int, default=DEFAULT_N, help="samples per problem (default 32)")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="default 1.0; 0 is greedy")
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P, help="default 1.0")
    p.add_argument("--max-tokens", type=_positive_int, default=DEFAULT_MAX_TOKENS,
                   help="maximum response tokens (default 8192, the paper's response length)")
    p.add_argument("--backend", choices=("auto", "vllm", "transformers"), default="auto",
                   help="auto: vLLM when installed and a GPU is present, else transformers")
    p.add_argument("--batch-size", type=_positive_int, default=32,
                   help="sequences per transformers generate call (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system-prompt", default=SYSTEM_PROMPT, help="default: the paper's; '' for none")
    p.add_argument("--no-chat-template", action="store_true", help="plain-text prompts (base models)")
    p.add_argument("--thinking", action="store_true", help="enable_thinking=True in the chat template (Qwen3)")
    p.add_argument("--split", default=None, help="dataset split for known benchmarks (loader default otherwise)")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N problems of each dataset")
    p.add_argument("--problem-column", default=None, help="problem column of a local file")
    p.add_argument("--answer-column", default=None, help="gold-answer column of a local file")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--tensor-parallel-size", type=_positive_int, default=1, help="vLLM only")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM only")
    p.add_argument("--overwrite", action="store_true", help="discard the generation cache in --output-dir")
    p.add_argument("--verifier", choices=VERIFIERS, default="math_accuracy",
                   help="answer check: math_accuracy (math-verify, default) or math_string_match (the "
                   "Hendrycks-MATH string match of the paper's runs)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """`prerl-trl eval`: returns the exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        results = evaluate(
            args.model, args.dataset, output_dir=args.output_dir, n=args.n, temperature=args.temperature,
            top_p=args.top_p, max_tokens=args.max_tokens, backend=args.backend, batch_size=args.batch_size,
            seed=args.seed, system_prompt=args.system_prompt or None, chat_template=not args.no_chat_template,
            thinking=args.thinking, split=args.split, limit=args.limit, problem_column=args.problem_column,
            answer_column=args.answer_column, dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization, overwrite=args.overwrite, plot=not args.no_plot,
            progress=not args.no_progress, verifier=args.verifier,
        )
    except (EvaluationError, OSError) as err:
        print(f"prerl-trl eval: error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(results))
    print(f"\nwrote {Path(args.output_dir) / RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
