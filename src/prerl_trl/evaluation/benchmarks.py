"""Benchmarks: loading a dataset as problems with gold answers, and rendering their prompts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import SYSTEM_PROMPT
from .defaults import LOCAL_SUFFIXES, EvaluationError


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
    from ..data import KNOWN_DATASETS

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
    from ..data import load_math_dataset

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
