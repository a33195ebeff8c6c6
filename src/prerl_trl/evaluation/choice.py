"""Multiple-choice benchmarks (GPQA-Diamond, MMLU-Pro): loading rows in their Hub formats, the prompt (reason, then a
boxed letter), the seeded shuffle of GPQA's choices, and the extraction of the answer letter.

The extraction is as strict as the math verifier: the last `\\boxed{...}` decides; without a box, the last non-empty
line must be a bare letter ("C", "(C)", "**C**", "Answer: C", "The answer is C."). A hedge or a list ("A or B",
"A, C", "\\boxed{A}\\boxed{B}" ends with B: the last box counts) scores 0, as does a letter that is not one of the
question's choices.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from typing import Any

from ..rewards.extraction import extract_boxed_answer

#: The Hub sources: (dataset id, config, split). GPQA is gated: accept its terms on the Hub and log in first.
HUB_SOURCES = {
    "gpqa_diamond": ("Idavidrein/gpqa", "gpqa_diamond", "train"),
    "mmlu_pro": ("TIGER-Lab/MMLU-Pro", None, "test"),
}
#: The seed of GPQA's choice shuffle: fixed, so that every model sees the same order (not the sampling `--seed`).
GPQA_SHUFFLE_SEED = 0
GPQA_COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
MMLU_PRO_COLUMNS = ("question", "options", "answer")
LETTERS = string.ascii_uppercase


def detect_format(columns: Sequence[str]) -> str | None:
    """"gpqa" or "mmlu_pro" when `columns` hold that Hub format, else None."""
    if all(c in columns for c in GPQA_COLUMNS):
        return "gpqa"
    if all(c in columns for c in MMLU_PRO_COLUMNS):
        return "mmlu_pro"
    return None


def shuffle_order(key: str, num_choices: int, seed: int = GPQA_SHUFFLE_SEED) -> list[int]:
    """A permutation of range(num_choices) that depends only on (seed, key): each index is ranked by the SHA-256 of
    "seed, key, index", so it is the same on every machine and Python version and for any row order."""
    def rank(i: int) -> str:
        return hashlib.sha256(f"{seed}\0{key}\0{i}".encode()).hexdigest()

    return sorted(range(num_choices), key=rank)


def gpqa_row(row: dict[str, Any], seed: int = GPQA_SHUFFLE_SEED) -> tuple[str, list[str], str]:
    """(question, shuffled choices, gold letter) of a GPQA row. The correct answer is choice 0 before shuffling; the
    shuffle is keyed by the row's "Record ID" (the question text when there is none)."""
    question = str(row["Question"]).strip()
    choices = [str(row["Correct Answer"]).strip(), *(str(row[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3))]
    order = shuffle_order(str(row.get("Record ID") or question), len(choices), seed)
    return question, [choices[i] for i in order], LETTERS[order.index(0)]


def mmlu_pro_row(row: dict[str, Any]) -> tuple[str, list[str], str]:
    """(question, choices, gold letter) of an MMLU-Pro row (`options` a list, `answer` a letter; `answer_index`
    wins when present)."""
    options = [str(o).strip() for o in row["options"]]
    if not options or len(options) > len(LETTERS):
        raise ValueError(f"question {row.get('question_id', '?')}: {len(options)} options")
    index = row.get("answer_index")
    letter = LETTERS[int(index)] if index is not None and str(index) != "" else str(row["answer"]).strip().upper()
    if letter not in LETTERS[: len(options)]:
        raise ValueError(f"question {row.get('question_id', '?')}: answer {letter!r} is not one of its options")
    return str(row["question"]).strip(), options, letter


def choice_prompt(question: str, choices: Sequence[str]) -> str:
    """The user message: the question, the lettered choices, and the instruction to box the letter."""
    letters = LETTERS[: len(choices)]
    listed = "\n".join(f"{letter}) {choice}" for letter, choice in zip(letters, choices, strict=True))
    options = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    return (f"{question}\n\n{listed}\n\nReason step by step, then give the letter of the correct choice ({options}) "
            "within \\boxed{}.")


_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|emph|mbox)\s*\{([^{}]*)\}")
_ANSWER_PREFIX = re.compile(
    r"^.*?\b(?:the\s+)?(?:correct\s+|final\s+|best\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:：]?\s*", re.IGNORECASE
)


def _clean(text: str) -> str:
    for _ in range(3):
        text = _WRAPPERS.sub(r"\1", text)
    return text.replace("$", "").replace("*", "").replace("\\", "").strip()


def _single_letter(text: str, letters: str, lowercase: bool) -> str | None:
    """The letter when `text` is one choice: "B", "(B)", "B.", "B)", "B) its text", "B. its text"; else None."""
    flags = re.IGNORECASE if lowercase else 0
    match = re.fullmatch(r"\(?([A-Z])\)?[.:]?", text, flags) or re.fullmatch(r"\(?([A-Z])(?:\)|\.|:)\s+\S.*", text,
                                                                               flags | re.DOTALL)
    if not match:
        return None
    letter = match.group(1).upper()
    return letter if letter in letters else None


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    """The answer letter of a completion, or None (no answer, a hedge, a list, or a letter outside `letters`)."""
    box = extract_boxed_answer(text)  # the last complete box, in linear time (the math verifier's)
    if box is not None:
        return _single_letter(_clean(box), letters, lowercase=True)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = _clean(lines[-1])
    if _single_letter(last, letters, lowercase=False) is None:
        last = _ANSWER_PREFIX.sub("", last, count=1).strip()
    return _single_letter(last, letters, lowercase=False)


def score_choices(completions: Sequence[str], answer: str, letters: str) -> list[bool]:
    """Whether each completion's extracted letter is `answer`."""
    return [extract_choice(c, letters) == answer for c in completions]
