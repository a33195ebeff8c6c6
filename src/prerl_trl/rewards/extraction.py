r"""Finding the answer: the final ``\boxed{}`` of a completion, and the gold answer of a dataset cell.

Everything here is plain string work in the calling process, linear in the input length.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MAX_ANSWER_CHARS", "answer_candidates", "extract_boxed_answer", "extract_final_answer"]

#: Boxed answers (and gold answers) longer than this are not parsed: 0.0 (resp. None).
MAX_ANSWER_CHARS: int = int(os.environ.get("PRERL_VERIFY_MAX_CHARS", "1000"))

BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_MAX_BOXED_CANDIDATES = 8
# What may stand between the boxes of one answer split over several boxes: "\boxed{1}, \boxed{2}",
# "$\boxed{1}$ and $\boxed{2}$", "\(\boxed{1}\) and \(\boxed{-2}\)". "or" too, so that "\boxed{3} or
# \boxed{5}" is one (hedged) answer, not a last box 5. Anything else (words) ends the run.
_BOX_SEPARATOR = re.compile(
    r"^(?:\s|\$|,|;|\\quad|\\qquad|\\[,;: ()\[\]]|\\text\{\s*(?:and|or)\s*\}|\b(?:and|or)\b)*$"
)


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


_CONNECTOR = re.compile(r",|;|\band\b")


def _gold_connector(gap: str) -> bool:
    """Between the boxes of one gold answer: a separator, or a few words with "and", a comma or a semicolon."""
    return bool(_BOX_SEPARATOR.match(gap)) or (len(gap) <= 40 and "\\" not in gap and bool(_CONNECTOR.search(gap)))


def _final_run(
    text: str, boxes: list[tuple[int, int, str]], joins: Callable[[str], bool] | None = None
) -> list[tuple[int, int, str]]:
    """The last boxes of ``boxes`` whose gaps satisfy ``joins`` (default: only ``_BOX_SEPARATOR`` text)."""
    joins = joins or (lambda gap: bool(_BOX_SEPARATOR.match(gap)))
    run = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if box[1] <= run[0][0] and joins(text[box[1] : run[0][0]]):
            run.insert(0, box)
        else:
            break
    return run


def _joined(boxes: list[tuple[int, int, str]]) -> str:
    parts = [content for *_, content in boxes if content]
    return ", ".join(parts) if len(parts) > 1 else boxes[-1][2]


def extract_final_answer(text: str, max_chars: int | None = None) -> str | None:
    r"""The final boxed answer, joining an answer split over several adjacent boxes.

    ``\boxed{1}, \boxed{2}`` and ``$\boxed{1}$ and $\boxed{2}$`` give ``1, 2``, the same as
    ``\boxed{1, 2}``: boxes separated only by commas, semicolons, spaces, ``$``, ``\(`` ``\)`` or "and"
    form one answer. A box followed by words (``\boxed{3}. Wait, ... \boxed{4}``) starts a new answer, so
    only the last one counts. Otherwise the same as :func:`extract_boxed_answer`.
    """
    if not isinstance(text, str) or "\\" not in text:
        return None
    limit = MAX_ANSWER_CHARS if max_chars is None else max_chars
    boxes = _boxes(text, limit)
    if not boxes:
        return None
    joined = _joined(_final_run(text, boxes))
    return joined if len(joined) <= limit else None


# The Minerva answer line: "Final Answer: The final answer is $X$. I hope it is correct." After a box only
# this exact form counts (prose such as "the final answer is correct" does not replace a boxed answer).
_FINAL_LINE = re.compile(r"final answer is:?[ \t]*", re.I)
_MINERVA_LINE = re.compile(r"final answer:\s*the final answer is:?[ \t]*", re.I)
_HOPE = re.compile(r"\.?\s*I hope it is correct", re.I)
_QUOTED = re.compile(r'\\?"(.*?)\\?"', re.S)
# One math span: $x$, $$x$$, \(x\) or \[x\] (no second span inside).
_DELIMITED = re.compile(r"\$\$([^$]+)\$\$|\$([^$]+)\$|\\\(((?:(?!\\[()]).)+)\\\)|\\\[((?:(?!\\[\[\]]).)+)\\\]", re.S)


def final_answer_line(text: str, start: int = 0, max_chars: int | None = None) -> str | None:
    r"""The answer of the last "final answer is X" statement, without its math delimiters.

    From ``start`` on (the end of the last box), only the Minerva form ``Final Answer: The final answer
    is $X$. I hope it is correct.`` counts; with ``start`` 0 (no box), any "final answer is X".
    """
    limit = MAX_ANSWER_CHARS if max_chars is None else max_chars
    matches = list((_MINERVA_LINE if start else _FINAL_LINE).finditer(text, start))
    if not matches:
        return None
    rest = text[matches[-1].end() : matches[-1].end() + limit + 40]
    hope = _HOPE.search(rest)
    answer = rest[: hope.start()] if hope else re.split(r"\.(?:\s|$)|\n", rest, maxsplit=1)[0]
    answer = answer.strip().rstrip(".").strip()
    quoted = _QUOTED.fullmatch(answer)
    if quoted:
        answer = quoted.group(1).strip()
    math = _DELIMITED.fullmatch(answer)
    if math:
        answer = next(g for g in math.groups() if g is not None).strip()
    elif "$" in answer:  # "$3$ or $5$": the math spans with the words between, all of it the answer
        answer = answer.replace("$", " ").strip()
    return answer if answer and len(answer) <= limit else None


_SEVERAL = re.compile(r",|;|\\text\{\s*(?:and|or)\s*\}|\b(?:and|or)\b")


def several_values(gold: str) -> bool:
    """Whether a gold answer may consist of several values (it has a list separator)."""
    return bool(_SEVERAL.search(gold))


def answer_candidates(text: str, max_chars: int | None = None, several: bool = True) -> list[str]:
    r"""What a completion gives as its final answer, best reading first; empty when it gives none.

    - A "final answer is X" line after the last box (the Minerva format) is the answer.
    - Otherwise the final boxed answer (:func:`extract_final_answer`).
    - With ``several`` (a gold answer made of several values) and boxes spread over the text (words between
      them), all boxes together are a second reading: ``\boxed{(3, 3)} for part (a) and \boxed{(1, 1)}`` is
      ``(3, 3), (1, 1)``. Only the last few boxes are scanned; a completion with more boxes than that has
      no such reading. A single-valued gold is compared with the final answer alone.
    """
    if not isinstance(text, str):
        return []
    limit = MAX_ANSWER_CHARS if max_chars is None else max_chars
    boxes = _boxes(text, limit) if "\\" in text else []
    line = final_answer_line(text, boxes[-1][1] if boxes else 0, limit)
    if line is not None:
        return [line]
    if not boxes:
        return []
    run = _final_run(text, boxes)
    final = _joined(run)
    candidates = [final] if len(final) <= limit else []
    if several and len(run) < len(boxes) and len(BOXED.findall(text)) <= _MAX_BOXED_CANDIDATES:
        together = _joined(boxes)
        if len(together) <= limit:
            candidates.append(together)
    return candidates


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
    r"""Gold answer from an ``answer`` column: bare LaTeX (or a number), without enclosing ``$`` or ``\(``.

    A ``\boxed{}`` inside wins, and so do the boxes before it joined by "and", a comma or a semicolon, even
    with a few words around: ``\boxed{1} papers and \boxed{2} bins`` is ``1, 2``.
    """
    if answer is None:
        return None
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    text = clean_unicode(str(answer)).strip()
    boxes = _boxes(text, len(text)) if "\\" in text else []
    if boxes:
        return _joined(_final_run(text, boxes, _gold_connector))
    math = _DELIMITED.fullmatch(text)
    return next(g for g in math.groups() if g is not None).strip() if math else text


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
