r"""Finding the answer: the final ``\boxed{}`` of a completion, and the gold answer of a dataset cell.

Everything here is plain string work in the calling process, linear in the input length.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_ANSWER_CHARS", "extract_boxed_answer", "extract_final_answer"]

#: Boxed answers (and gold answers) longer than this are not parsed: 0.0 (resp. None).
MAX_ANSWER_CHARS: int = int(os.environ.get("PRERL_VERIFY_MAX_CHARS", "1000"))

BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_MAX_BOXED_CANDIDATES = 8
# What may stand between the boxes of one answer split over several boxes: "\boxed{1}, \boxed{2}",
# "$\boxed{1}$ and $\boxed{2}$". Anything else (words, "or") ends the run.
_BOX_SEPARATOR = re.compile(r"^(?:\s|\$|,|;|\\quad|\\qquad|\\[,;: ]|\\text\{\s*and\s*\}|\band\b)*$")


def _balanced_group(text: str, start: int, limit: int) -> int | None:
    r"""Index just past the ``}`` closing the ``{`` at ``text[start]``, or None (unbalanced/too long).

    Escaped braces ``\{`` ``\}`` are skipped; when that never closes the group (a malformed
    ``\frac{\}{p}``), braces are counted as they stand, as the MATH paper's extraction does.
    """
    return _closing_brace(text, start, limit, escapes=True) or _closing_brace(text, start, limit, escapes=False)


def _closing_brace(text: str, start: int, limit: int, escapes: bool) -> int | None:
    depth, i, end = 0, start, min(len(text), start + limit + 2)
    while i < end:
        ch = text[i]
        if ch == "\\" and escapes:
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _boxes(text: str, limit: int) -> list[tuple[int, int, str]]:
    r"""The last few complete boxes of ``text`` as (start, end, content), in order of position."""
    found = []
    matches = list(BOXED.finditer(text))[-_MAX_BOXED_CANDIDATES:]
    for m in matches:
        pos = m.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == "{":
            end = _balanced_group(text, pos, limit)
            if end is not None:
                found.append((m.start(), end, text[pos + 1 : end - 1].strip()))
        else:
            token = re.match(r"[^\s$]{1,64}", text[pos:])
            if token:
                found.append((m.start(), pos + token.end(), token.group(0)))
    return found


def extract_boxed_answer(text: str, max_chars: int | None = None) -> str | None:
    r"""Return the content of the last complete ``\boxed{...}`` (or ``\fbox{...}``) in ``text``.

    ``\boxed 5`` (no braces) is accepted too. Returns None when there is no complete boxed answer
    or when it is longer than ``max_chars`` (default ``MAX_ANSWER_CHARS``). Linear time: at most a
    few candidates are scanned, each up to ``max_chars`` characters.
    """
    if not isinstance(text, str) or "\\" not in text:
        return None
    boxes = _boxes(text, MAX_ANSWER_CHARS if max_chars is None else max_chars)
    return boxes[-1][2] if boxes else None


def extract_final_answer(text: str, max_chars: int | None = None) -> str | None:
    r"""The final boxed answer, joining an answer split over several adjacent boxes.

    ``\boxed{1}, \boxed{2}`` and ``$\boxed{1}$ and $\boxed{2}$`` give ``1, 2``, the same as
    ``\boxed{1, 2}``: boxes separated only by commas, semicolons, spaces, ``$`` or "and" form one
    answer. A box followed by words (``\boxed{3}. Wait, ... \boxed{4}``) starts a new answer, so
    only the last one counts. Otherwise the same as :func:`extract_boxed_answer`.
    """
    if not isinstance(text, str) or "\\" not in text:
        return None
    limit = MAX_ANSWER_CHARS if max_chars is None else max_chars
    boxes = _boxes(text, limit)
    if not boxes:
        return None
    run = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if box[1] <= run[0][0] and _BOX_SEPARATOR.match(text[box[1] : run[0][0]]):
            run.insert(0, box)
        else:
            break
    parts = [content for *_, content in run if content]
    joined = ", ".join(parts) if len(parts) > 1 else run[-1][2]
    return joined if len(joined) <= limit else None


def completion_text(completion: Any) -> str:
    """Text of a completion: a plain string, or the last assistant message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        chosen = assistant or messages
        if chosen:
            content = chosen[-1].get("content")
            if isinstance(content, list):  # multimodal content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    return ""


def clean_unicode(text: str) -> str:
    """Replace lone surrogates and other unencodable code points, drop NULs."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def gold_from_answer(answer: Any) -> str | None:
    r"""Gold answer from an ``answer`` column: bare LaTeX (or a number); a ``\boxed{}`` inside wins."""
    if answer is None:
        return None
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    text = clean_unicode(str(answer)).strip()
    boxed = extract_final_answer(text, max_chars=len(text))
    return boxed if boxed is not None else text


def gold_from_solution(solution: Any) -> str | None:
    r"""Gold answer from a worked ``solution``: its last ``\boxed{}``, a GSM8K ``#### n`` tail, or a short bare answer."""
    if solution is None:
        return None
    text = clean_unicode(str(solution)).strip()
    boxed = extract_final_answer(text, max_chars=len(text))
    if boxed is not None:
        return boxed
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    return text if len(text) <= 100 else None
