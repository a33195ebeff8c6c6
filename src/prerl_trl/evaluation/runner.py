"""`evaluate`: load the benchmarks, generate what the cache lacks, score, and write the results."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..data import SYSTEM_PROMPT
from .backends import check_model_source, load_tokenizer, resolve_backend, run_generation
from .benchmarks import load_benchmark, render_prompts
from .cache import GenerationCache, WorkItem, check_settings, prompt_hash
from .defaults import (
    CACHE_FILE,
    DEFAULT_MAX_TOKENS,
    DEFAULT_N,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    PLOT_FILE,
    RESULTS_FILE,
    EvaluationError,
)
from .metrics import _check_int
from .report import mean_over_benchmarks, plot_pass_at_k, score_benchmark, summarize_benchmark
from .sandbox import SandboxLimits


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
    code_timeout: float = 5.0,
    code_memory_mb: int = 1024,
    code_workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on `datasets` (math names from `prerl_trl.data`, `humaneval`, `gpqa_diamond`, `mmlu_pro`, or
    local files) and write results.json, pass_at_k.png and the generation cache to `output_dir`. Returns the results
    dict.

    HumanEval completions run in the sandbox (`prerl_trl.evaluation.sandbox`) with `code_timeout` wall seconds and
    `code_memory_mb` of memory each, `code_workers` at a time (default: one per usable CPU).
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
    if temperature == 0 and n > 1:
        print(f"warning: --temperature 0 is greedy: the {n} answers per problem are identical, so pass@k = pass@1. "
              "Use --n 1, or a temperature > 0 for pass@k.", file=sys.stderr)
    if not datasets:
        raise EvaluationError("pass at least one --dataset")
    try:
        code_limits = SandboxLimits(timeout=code_timeout, memory_mb=code_memory_mb)
    except ValueError as err:
        raise EvaluationError(str(err)) from None
    if code_workers is not None and code_workers < 1:
        raise EvaluationError(f"--code-workers must be >= 1, got {code_workers}")
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
    check_settings(output_dir, settings, overwrite)

    tokenizer = load_tokenizer(model)
    work: list[WorkItem] = []
    cache = GenerationCache(output_dir / CACHE_FILE)
    for bench in benchmarks:
        render_prompts(bench, tokenizer, chat_template=chat_template, thinking=thinking)
        for index, (prompt, ids) in enumerate(zip(bench.prompts, bench.prompt_ids, strict=True)):
            for sample in range(n):
                key = (bench.name, index, sample)
                rec = cache.get(key)
                if rec is not None and rec.get("prompt_hash") != prompt_hash(prompt):
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
        scores, extra = score_benchmark(bench, samples, verifier, code_limits=code_limits, workers=code_workers,
                                        progress=progress)
        summary = summarize_benchmark(bench.name, bench.answers, samples, n, verifier, scores=scores)
        results["benchmarks"][bench.name] = {"kind": bench.kind, **summary, **extra}
    results["mean"] = mean_over_benchmarks(results["benchmarks"])
    _write_json(output_dir / RESULTS_FILE, results)
    if plot:
        plot_pass_at_k(results, output_dir / PLOT_FILE)
    return results
