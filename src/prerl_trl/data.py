r"""Math datasets in the paper's prompt format: rows with ``prompt`` and ``answer``, in one call.

>>> ds = load_math_dataset("math")                       # MATH train, 7,500 problems
>>> ds = load_math_dataset("aime24")                     # HuggingFaceH4/aime_2024
>>> ds = load_math_dataset("my_problems.jsonl")          # local: 'problem'/'question' + 'answer'
>>> ds = load_math_dataset("rows.parquet", problem_field="q", solution_field="worked")
>>> ds = load_math_dataset("math_train.parquet")         # verl format, read as it is

Each row has ``prompt`` (conversational by default: the paper's system prompt then the problem as
the user turn; ``conversational=False`` gives plain text) and ``answer``: a bare LaTeX gold answer
for :func:`prerl_trl.rewards.math_accuracy_reward`. Answers are taken from an answer column, or
extracted from a worked solution's last ``\boxed{}`` (or GSM8K's ``#### n``).

verl-format files (a ``prompt`` column of chat messages and a ``reward_model`` column holding
``{"ground_truth": ...}``, as verl's data preprocessing writes them) are read as they are: the
file's messages are the prompt and ``reward_model.ground_truth`` the answer.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .rewards.extraction import extract_boxed_answer

logger = logging.getLogger(__name__)

__all__ = [
    "KNOWN_DATASETS",
    "SYSTEM_PROMPT",
    "DatasetSpec",
    "build_prompt",
    "extract_answer",
    "load_math_dataset",
]

#: The paper's system prompt (also used by the reference runs on MATH train).
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

_PROBLEM_CANDIDATES = ("problem", "question", "Problem", "Question")
_ANSWER_CANDIDATES = ("answer", "Answer", "final_answer", "ground_truth")
_SOLUTION_CANDIDATES = ("solution", "Solution")
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}

_DAPO_PREFIX = re.compile(r"^Solve the following math problem step by step\..*?\n\n", re.S)
_DAPO_SUFFIX = re.compile(r"\n\nRemember to put your answer on its own line after \"Answer:\"\.?\s*$")


def strip_dapo_instruction(problem: str) -> str:
    """Remove DAPO's "Answer: $Answer" instructions, which contradict the boxed-answer system prompt."""
    return _DAPO_SUFFIX.sub("", _DAPO_PREFIX.sub("", problem, count=1)).strip()


@dataclass(frozen=True)
class DatasetSpec:
    """Where a known dataset lives and how its columns map to ``problem`` and ``answer``.

    Exactly one of ``answer_field`` (a bare answer) and ``solution_field`` (a worked solution whose
    last ``\\boxed{}`` is the answer) is used; ``answer_field`` wins when both are set.
    ``path`` may be a hub id or a local file/directory (handy for tests and mirrors).
    """

    path: str
    split: str = "train"
    config_name: str | None = None
    problem_field: str = "problem"
    answer_field: str | None = "answer"
    solution_field: str | None = None
    problem_transform: Callable[[str], str] | None = None
    description: str = ""


#: Short name -> source. Override an entry's ``path`` (``dataclasses.replace``) to use a mirror.
KNOWN_DATASETS: dict[str, DatasetSpec] = {
    "math": DatasetSpec(
        "DigitalLearningGmbH/MATH-lighteval",
        split="train",
        config_name="default",
        answer_field=None,
        solution_field="solution",
        description="MATH (Hendrycks et al.), train 7,500 / test 5,000; answer = last \\boxed{} of the solution",
    ),
    "math500": DatasetSpec("HuggingFaceH4/MATH-500", split="test", description="MATH-500 test subset"),
    "aime24": DatasetSpec("HuggingFaceH4/aime_2024", split="train", description="AIME 2024, 30 problems"),
    "aime25": DatasetSpec("yentinglin/aime_2025", split="train", description="AIME 2025 I+II, 30 problems"),
    "amc23": DatasetSpec(
        "math-ai/amc23", split="test", problem_field="question", description="AMC 2023, 40 problems"
    ),
    "dapo17k": DatasetSpec(
        "open-r1/DAPO-Math-17k-Processed",
        split="train",
        config_name="en",
        problem_field="prompt",
        answer_field="solution",
        problem_transform=strip_dapo_instruction,
        description="DAPO-Math-17k, deduplicated English subset; DAPO's answer-format instructions removed",
    ),
    "deepscaler": DatasetSpec(
        "agentica-org/DeepScaleR-Preview-Dataset",
        split="train",
        description="DeepScaleR-Preview, ~40k problems",
    ),
    "gsm8k": DatasetSpec(
        "openai/gsm8k",
        split="train",
        config_name="main",
        problem_field="question",
        answer_field=None,
        solution_field="answer",
        description="GSM8K; answer = the number after '#### '",
    ),
}


def build_prompt(problem: str, conversational: bool = True, system_prompt: str | None = SYSTEM_PROMPT) -> Any:
    """The paper's prompt for one problem: system + user messages, or plain text (problem, then instruction)."""
    if conversational:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return messages + [{"role": "user", "content": problem}]
    return f"{problem}\n\n{system_prompt}" if system_prompt else problem


def _to_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value).strip()


def extract_answer(value: Any, from_solution: bool = False) -> str | None:
    r"""Gold answer text from an answer or solution cell.

    A list (``[1, 2]``) is the set of its values, ``"1, 2"``. A ``\boxed{}`` inside wins (the last one); else the text after GSM8K's ``####``; else an answer
    cell is returned as is, and a solution cell without either gives None.
    """
    if isinstance(value, (list, tuple)):  # [1, 2]: the set of values, as the verifier reads a bare "1, 2"
        return ", ".join(t for v in value if (t := _to_text(v))) or None
    text = _to_text(value)
    boxed = extract_boxed_answer(text, max_chars=len(text))
    if boxed:
        return boxed
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "") or None
    if from_solution:
        return None
    return text or None


def _looks_like_file(name: str) -> bool:
    """A local path by its look: a data-file suffix, or an explicit ``./``, ``../``, ``/`` or ``~`` prefix."""
    return name.lower().endswith(tuple(_FILE_BUILDERS)) or name.startswith(("./", "../", "/", "~", ".\\"))


def _check_files_exist(data_files: Any) -> None:
    """Every named file exists and is not empty (`datasets` fails on a 0-byte file with a bare StopIteration)."""
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    for file in files:
        if not isinstance(file, str) or any(ch in file for ch in "*?["):
            continue
        if not os.path.exists(file):
            raise FileNotFoundError(f"data_files: file not found: {file!r} (from {os.getcwd()})")
        if os.path.isfile(file) and os.path.getsize(file) == 0:
            raise ValueError(f"{file}: the data file is empty (0 bytes); write its rows, or pass another file.")


def _load_raw(source: str, split: str, config_name: str | None, data_files: Any) -> Any:
    """``datasets.load_dataset`` for a hub id, a local file or directory, or explicit ``data_files``."""
    import datasets

    if data_files is None and os.path.isfile(source):
        data_files = source
    if data_files is not None:
        _check_files_exist(data_files)
        first = data_files if isinstance(data_files, str) else next(iter(data_files))
        builder = _FILE_BUILDERS.get(os.path.splitext(str(first))[1].lower())
        if builder is None:
            raise ValueError(
                f"data_files={data_files!r}: unsupported file type; use one of {sorted(_FILE_BUILDERS)}."
            )
        try:
            return datasets.load_dataset(builder, data_files={split: data_files}, split=split)
        except Exception:  # datasets' own error is a long chain: name the file and line when JSON is bad
            if builder == "json" and (where := _first_json_error([data_files] if isinstance(data_files, str)
                                                                  else list(data_files))):
                raise ValueError(where) from None
            raise
    return datasets.load_dataset(source, config_name, split=split)


def _first_json_error(files: list[Any]) -> str | None:
    """`file: line N is not valid JSON (...)` for the first malformed line of JSON Lines files (or the error of a
    one-document .json file); None when every file parses."""
    import json

    for file in files:
        if not isinstance(file, str) or not os.path.isfile(file):
            continue
        with open(file, encoding="utf-8", errors="replace") as f:
            text = f.read()
        try:
            json.loads(text)
            continue  # one JSON document
        except json.JSONDecodeError as whole:
            document_error = whole
        lines = text.splitlines()
        first = next((line for line in lines if line.strip()), "")
        if not file.lower().endswith(".jsonl") and not _parses(first):
            error = document_error
            return (f"{file}: line {error.lineno} is not valid JSON ({error.msg}, column {error.colno}); fix it, "
                    "or write one JSON object per line (JSON Lines).")
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as error:
                    return (f"{file}: line {number} is not valid JSON ({error.msg}, column {error.colno}); fix or "
                            "remove that line (JSON Lines: one object per line).")
    return None


def _parses(line: str) -> bool:
    import json

    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _pick(columns: list[str], explicit: str | None, candidates: tuple[str, ...]) -> str | None:
    if explicit is not None:
        return explicit
    return next((c for c in candidates if c in columns), None)


def _missing(source: str, role: str, field: str | None, argument: str, columns: list[str]) -> ValueError:
    wanted = f"column {field!r}" if field else f"{role} column"
    return ValueError(
        f"{source}: no {wanted} (it has columns {columns}); name the right one with {_flag(argument)} <column> "
        f"({argument}= in Python)."
    )


def _flag(argument: str) -> str:
    """The command-line spelling of a loader argument, accepted by both `prerl-trl train` and `prerl-trl eval`."""
    return "--" + argument.replace("_", "-")


def load_math_dataset(
    name_or_path: str,
    split: str | None = None,
    *,
    config_name: str | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
    solution_field: str | None = None,
    data_files: str | list[str] | None = None,
    conversational: bool = True,
    system_prompt: str | None = SYSTEM_PROMPT,
    max_samples: int | None = None,
    drop_unanswered: bool = True,
) -> Any:
    r"""Load a math dataset as a ``datasets.Dataset`` with ``prompt`` and ``answer`` columns.

    Args:
        name_or_path: a short name from ``KNOWN_DATASETS`` (``math``, ``math500``, ``aime24``,
            ``aime25``, ``amc23``, ``dapo17k``, ``deepscaler``, ``gsm8k``), a local ``.json`` /
            ``.jsonl`` / ``.parquet`` / ``.csv`` file or directory, or any hub id.
        split: the split to load (default: the known dataset's split, else ``"train"``).
        config_name: hub config (default: the known dataset's config).
        problem_field: column holding the problem (default: the known mapping, else ``problem``
            or ``question``).
        answer_field: column holding a bare gold answer (default: the known mapping, else ``answer``).
        solution_field: column holding a worked solution whose last ``\boxed{}`` is the answer;
            used when no answer column is given or found.
        data_files: local files in the source's own schema, read instead of the hub (a known
            name's field mapping still applies), e.g. an offline mirror.
        conversational: True for ``[system, user]`` messages, False for one plain-text prompt.
        system_prompt: the instruction (default: the paper's ``SYSTEM_PROMPT``); None drops it.
        max_samples: keep only the first ``max_samples`` rows.
        drop_unanswered: drop rows whose answer cannot be extracted (logged), else keep them with "".

    Raises:
        ValueError: unknown short name, unsupported file type, or a missing column (the message
            lists the columns the data has and the argument that fixes it).
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(
            f"{name_or_path}: max_samples={max_samples} (--max_train_samples / --max-samples) selects no rows; pass "
            "a positive number, or leave it out to use every row."
        )
    key = name_or_path.lower()
    spec = KNOWN_DATASETS.get(key)
    if spec is None and data_files is None and _looks_like_file(name_or_path) and not os.path.exists(name_or_path):
        raise FileNotFoundError(
            f"dataset file not found: {name_or_path!r} (from {os.getcwd()}); check the path, or use a known "
            f"name ({', '.join(sorted(KNOWN_DATASETS))}) or a hub id such as 'org/name'."
        )
    if (
        spec is None
        and data_files is None
        and not os.path.exists(name_or_path)
        and not _looks_like_hub_id(name_or_path)
    ):
        raise ValueError(
            f"Unknown dataset {name_or_path!r}: use one of the known names {sorted(KNOWN_DATASETS)}, "
            "a local .json/.jsonl/.parquet/.csv file, or a hub id such as 'org/name'."
        )
    if spec is not None:
        split = split or spec.split
        config_name = config_name or spec.config_name
        problem_field = problem_field or spec.problem_field
        if answer_field is None and solution_field is None:
            answer_field, solution_field = spec.answer_field, spec.solution_field
        source = spec.path
        transform = spec.problem_transform
    else:
        split, source, transform = split or "train", name_or_path, None

    raw = _load_raw(source, split, config_name, data_files)
    columns = list(raw.column_names)
    label = f"{name_or_path!r}" + (f" ({source})" if source != name_or_path else "")
    if _is_verl_format(raw) and problem_field is None and answer_field is None and solution_field is None:
        return _from_verl(raw, label, conversational, max_samples, drop_unanswered)

    problem_col = _pick(columns, problem_field, _PROBLEM_CANDIDATES)
    if problem_col not in columns:
        raise _missing(label, "problem", problem_col, "problem_field", columns)
    if answer_field is None and solution_field is None:
        answer_field = _pick(columns, None, _ANSWER_CANDIDATES)
        if answer_field is None:
            solution_field = _pick(columns, None, _SOLUTION_CANDIDATES)
        if answer_field is None and solution_field is None:
            raise ValueError(
                f"{label}: no answer column (it has columns {columns}); name the column with the bare answer with "
                "--answer-field <column>, or one with a worked solution ending in \\boxed{} with --solution-field "
                "<column> (answer_field= / solution_field= in Python)."
            )
    gold_col, from_solution = (answer_field, False) if answer_field is not None else (solution_field, True)
    if gold_col not in columns:
        argument = "solution_field" if from_solution else "answer_field"
        raise _missing(label, "solution" if from_solution else "answer", gold_col, argument, columns)

    if max_samples is not None:
        raw = raw.select(range(min(max_samples, len(raw))))

    def convert(row: dict) -> dict:
        problem = _to_text(row[problem_col])
        if transform is not None:
            problem = transform(problem)
        answer = extract_answer(row[gold_col], from_solution=from_solution) or ""
        # new names, so that map() cannot reuse the source's dtype for "answer" (AMC23 stores floats)
        return {
            "_prerl_prompt": build_prompt(problem, conversational, system_prompt),
            "_prerl_answer": answer,
            "_prerl_no_problem": not problem,
        }

    dataset = raw.map(convert, remove_columns=columns, desc=f"Formatting {name_or_path}")
    return _finish(dataset, label, drop_unanswered)


def _finish(dataset: Any, label: str, drop_unanswered: bool) -> Any:
    """Rename the working columns to ``prompt`` / ``answer`` and drop unanswered rows (logged)."""
    before = len(dataset)
    if "_prerl_no_problem" in dataset.column_names:
        dataset = dataset.filter(lambda row: not row["_prerl_no_problem"])
        if len(dataset) < before:
            logger.warning("%s: dropped %d of %d rows with an empty or null problem", label, before - len(dataset),
                           before)
    dataset = dataset.rename_columns({"_prerl_prompt": "prompt", "_prerl_answer": "answer"})
    dataset = dataset.select_columns(["prompt", "answer"])
    with_problem = len(dataset)
    if drop_unanswered:
        dataset = dataset.filter(lambda row: bool(row["answer"]))
        if len(dataset) < with_problem:
            logger.warning("%s: dropped %d rows without an extractable answer", label, with_problem - len(dataset))
    if len(dataset) == 0:
        why = (f"all {before} rows were dropped: none has both a problem and an extractable answer. Check "
               "--problem-field, --answer-field / --solution-field, or the rows themselves") if before else "it has no rows"
        raise ValueError(f"{label}: no data to use, {why}.")
    return dataset


def _is_verl_format(raw: Any) -> bool:
    """verl's schema: ``prompt`` is a list of chat messages and ``reward_model`` holds ``ground_truth``."""
    import datasets

    features = raw.features
    if "prompt" not in features or "reward_model" not in features:
        return False
    prompt, reward = features["prompt"], features["reward_model"]
    list_types = tuple(t for t in (list, getattr(datasets, "List", None), getattr(datasets, "Sequence", None)) if t)
    return isinstance(prompt, list_types) and isinstance(reward, dict) and "ground_truth" in reward


def _from_verl(raw: Any, label: str, conversational: bool, max_samples: int | None, drop_unanswered: bool) -> Any:
    """A verl-format dataset as it is: the file's messages, and ``reward_model.ground_truth``."""
    if max_samples is not None:
        raw = raw.select(range(min(max_samples, len(raw))))

    def convert(row: dict) -> dict:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        if not conversational:  # the user turn, then the system instruction, as build_prompt does
            system = " ".join(m["content"] for m in messages if m["role"] == "system")
            user = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
            messages = f"{user}\n\n{system}" if system else user
        gold = (row["reward_model"] or {}).get("ground_truth")
        return {"_prerl_prompt": messages, "_prerl_answer": _to_text(gold)}

    dataset = raw.map(convert, remove_columns=list(raw.column_names), desc=f"Reading {label} (verl format)")
    return _finish(dataset, label, drop_unanswered)


def _looks_like_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.\-]+/[\w.\-]+", name))


def dataset_source(name_or_path: str) -> tuple[str | None, str]:
    """(the Hub id of a dataset name, or None for a local file or folder; how a model card names it)."""
    spec = KNOWN_DATASETS.get(name_or_path.lower())
    if spec is not None and not os.path.exists(spec.path):
        return spec.path, f"`{spec.path}` (`{name_or_path}`)"
    if spec is not None or os.path.exists(name_or_path) or _looks_like_file(name_or_path):
        path = spec.path if spec is not None else name_or_path
        return None, f"local file `{os.path.basename(os.path.normpath(path))}`"
    return name_or_path, f"`{name_or_path}`"


def count_overlong_prompts(dataset: Any, tokenizer: Any, max_tokens: int, **template_kwargs: Any) -> int:
    """How many of `dataset`'s prompts take more than `max_tokens` tokens (chat prompts with the chat template and
    the generation prompt, as the trainer renders them: `template_kwargs` are the trainer's `tools`,
    `chat_template` and `chat_template_kwargs`)."""
    prompts = dataset["prompt"]
    if not prompts:
        return 0
    if not isinstance(prompts[0], str):
        prompts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True, **template_kwargs)
                   for p in prompts]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    return sum(length > max_tokens for length in lengths)
