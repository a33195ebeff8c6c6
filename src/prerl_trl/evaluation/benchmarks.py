"""Benchmarks: loading a dataset as problems with gold answers, and rendering their prompts.

Three kinds: "math" (`prerl_trl.data` loaders, checked by a math verifier), "choice" (GPQA-Diamond, MMLU-Pro: a
boxed letter, `choice.py`) and "code" (HumanEval: tests run in a sandbox, `humaneval.py`)."""

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
    kind: str = "math"  # "math", "choice" (a boxed letter) or "code" (tests run in the sandbox)
    # per problem, what scoring needs beyond the answer: "letters" (choice), the HumanEval row (code: its "prompt" is
    # also the plain-text prompt used without a chat template)
    problems: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.answers)


#: Benchmarks outside math, by the name `--benchmark` takes.
OOD_BENCHMARKS = ("humaneval", "gpqa_diamond", "mmlu_pro")


def _known_datasets() -> list[str]:
    from ..data import KNOWN_DATASETS

    return sorted(KNOWN_DATASETS)


def _is_local_spec(spec: str) -> bool:
    return _suffix(spec) in (*LOCAL_SUFFIXES, ".jsonl.gz") or Path(spec).exists()


def _suffix(spec: str) -> str:
    name = Path(spec).name.lower()
    return ".jsonl.gz" if name.endswith(".jsonl.gz") else Path(spec).suffix.lower()


def benchmark_name(spec: str) -> str:
    """The name a dataset argument is reported (and cached) under: the short name, the file stem or the hub id's
    last part."""
    if _is_local_spec(spec):
        suffix = _suffix(spec)
        return Path(spec).name[: -len(suffix)] if suffix else Path(spec).name
    return spec.rstrip("/").split("/")[-1].lower()


def _local_rows(path: str) -> list[dict[str, Any]]:
    """The rows of a local .json / .jsonl / .jsonl.gz / .parquet file."""
    if _suffix(path) in (".jsonl", ".jsonl.gz"):
        from .humaneval import read_jsonl

        return read_jsonl(path)
    import datasets

    builder = "parquet" if _suffix(path) == ".parquet" else "json"
    return datasets.load_dataset(builder, data_files=str(path), split="train").to_list()


def _local_format(path: str) -> tuple[str | None, list[dict[str, Any]]]:
    """("code" | "gpqa" | "mmlu_pro" | None, rows) of a local file, from its columns; None (math) when it cannot
    be read here: the math loader then says what is wrong."""
    from .choice import detect_format
    from .humaneval import HUMANEVAL_COLUMNS

    try:
        rows = _local_rows(path)
    except Exception:  # noqa: BLE001 - an unreadable file is the math loader's to report
        return None, []
    if not rows:
        return None, []
    columns = list(rows[0])
    if all(c in columns for c in HUMANEVAL_COLUMNS):
        return "code", rows
    return detect_format(columns), rows


def _hub_rows(name: str, split: str | None) -> list[dict[str, Any]]:
    """The rows of GPQA-Diamond or MMLU-Pro from the Hub, or one line saying how to get them."""
    import datasets

    from .choice import HUB_SOURCES

    repo, config, default_split = HUB_SOURCES[name]
    try:
        # --split is the math benchmarks' unless it names one of MMLU-Pro's two splits
        chosen = split if name == "mmlu_pro" and split in ("test", "validation") else default_split
        ds = datasets.load_dataset(repo, config, split=chosen)
    except Exception as err:  # noqa: BLE001 - gated, offline, missing: all end in the same advice
        text = " ".join(str(err).split()) or type(err).__name__
        gated = name == "gpqa_diamond" or "gated" in text.lower()
        login = (f"it is gated: accept its terms at https://huggingface.co/datasets/{repo} and log in (`hf auth login` "
                 "or HF_TOKEN); " if gated else "")
        raise EvaluationError(
            f"{name}: cannot load {repo} ({type(err).__name__}: {text[:160]}); {login}offline, pass a local copy "
            f"instead: --benchmark path/to/{name}.parquet (or .jsonl) with the Hub's columns"
        ) from None
    return ds.to_list()


def _choice_benchmark(name: str, fmt: str, rows: list[dict[str, Any]], system_prompt: str | None,
                      limit: int | None) -> Benchmark:
    from .choice import choice_prompt, gpqa_row, mmlu_pro_row

    rows = rows[:limit] if limit else rows
    messages, answers, problems = [], [], []
    for number, row in enumerate(rows):
        try:
            question, choices, letter = gpqa_row(row) if fmt == "gpqa" else mmlu_pro_row(row)
        except (KeyError, ValueError, TypeError) as err:
            raise EvaluationError(f"{name}: row {number}: {err}") from None
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append([*system, {"role": "user", "content": choice_prompt(question, choices)}])
        answers.append(letter)
        problems.append({"letters": "".join(chr(ord("A") + i) for i in range(len(choices)))})
    return Benchmark(name=name, messages=messages, answers=answers, kind="choice", problems=problems)


def _code_benchmark(name: str, rows: list[dict[str, Any]], system_prompt: str | None, limit: int | None) -> Benchmark:
    from .humaneval import check_columns, user_message

    check_columns(rows, name)
    rows = rows[:limit] if limit else rows
    # The math system prompt asks for a boxed answer: HumanEval keeps only a prompt the user chose instead.
    system = [{"role": "system", "content": system_prompt}] if system_prompt and system_prompt != SYSTEM_PROMPT else []
    return Benchmark(
        name=name,
        messages=[[*system, {"role": "user", "content": user_message(row)}] for row in rows],
        answers=[str(row["task_id"]) for row in rows],
        kind="code",
        problems=[dict(row) for row in rows],
    )


def _load_ood(spec: str, split: str | None, system_prompt: str | None, limit: int | None) -> Benchmark | None:
    """The benchmark when `spec` is one outside math (a name, or a local file in a HumanEval / GPQA / MMLU-Pro
    format), else None."""
    key = spec.lower()
    if key == "humaneval":
        from .humaneval import load_problems

        return _code_benchmark("humaneval", load_problems(), system_prompt, limit)
    if key in ("gpqa_diamond", "mmlu_pro"):
        return _choice_benchmark(key, "gpqa" if key == "gpqa_diamond" else "mmlu_pro", _hub_rows(key, split),
                                 system_prompt, limit)
    if _is_local_spec(spec) and Path(spec).is_file():
        fmt, rows = _local_format(spec)
        if fmt == "code":
            return _code_benchmark(benchmark_name(spec), rows, system_prompt, limit)
        if fmt is not None:
            return _choice_benchmark(benchmark_name(spec), fmt, rows, system_prompt, limit)
    return None


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
    """Load a benchmark: `humaneval`, `gpqa_diamond` or `mmlu_pro` (or a local file in one of their formats), else
    through `prerl_trl.data.load_math_dataset`: a short name (aime24, aime25, amc23, math500, ...), a local json /
    jsonl / parquet file with `problem` (or `question`) and `answer` columns, or a hub id.

    Math rows whose gold answer cannot be extracted are dropped by the loader (and logged)."""
    from ..data import load_math_dataset

    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit must be >= 1, got {limit}")
    if _suffix(spec) in (*LOCAL_SUFFIXES, ".jsonl.gz") and not Path(spec).is_file():
        raise EvaluationError(f"dataset file {spec!r} does not exist")
    ood = _load_ood(spec, split, system_prompt, limit)
    if ood is not None:
        return ood
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
    for index, messages in enumerate(benchmark.messages):
        plain = benchmark.problems[index]["prompt"] if benchmark.kind == "code" else None
        if not use_template and plain is not None:  # a base model continues HumanEval's function
            text = plain
            ids = tokenizer(text)["input_ids"]
        elif use_template:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n"
            ids = tokenizer(text)["input_ids"]
        benchmark.prompts.append(text)
        benchmark.prompt_ids.append(list(ids))
