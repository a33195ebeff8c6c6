r"""Answer equivalence with math-verify: a cheap exact pre-check, and the worker-side verifier.

The pre-check (:func:`fast_verdict`) decides plain numbers, choice letters, text words and
string-equal answers in the calling process, in agreement with math-verify. Everything else is
decided by :func:`worker_verify`, which runs math-verify inside a supervised worker process (see
``pool.py``). This file imports nothing from the package: workers load it by path, so they never
import torch, TRL or the training script.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from fractions import Fraction
from typing import Any

# Verdict codes, shared by the parent and the workers.
EQUAL, NOT_EQUAL, GOLD_UNPARSEABLE, PRED_UNPARSEABLE, ERROR, TIMEOUT, NO_ANSWER = 1, 0, -1, -2, -3, -4, -5

#: Address-space cap of each worker process in MiB (0 disables it).
WORKER_MEMORY_MB: int = int(os.environ.get("PRERL_VERIFY_MEMORY_MB", "4096"))

_SPACING = re.compile(r"\\[,;:! ]|~|\\(?:left|right|displaystyle|textstyle)\b|\s+|\\?\$")
_WRAPPERS = re.compile(r"^\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\{(.*)\}$", re.S)
_CHOICE = re.compile(r"^\(?([A-E])\)(?:[\s.:]|$)|^([A-E])\.?$")
_TEXT_COMMANDS = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z '\-]*[A-Za-z]$")
_MIXED = re.compile(
    r"^(-?)(\d+)\s*(?:\\[dt]?frac\s*(?:\{(\d+)\}|(\d))\s*(?:\{(\d+)\}|(\d))|\s(\d+)\s*/\s*(\d+))$"
)


def _normalize(text: str) -> str:
    """Whitespace/spacing-insensitive form used for the string-equality fast path."""
    text = _SPACING.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.rstrip(".")


def _unwrap_text(text: str) -> str:
    r"""``\text{(B)}`` -> ``(B)``; ``\textbf{ Monday }`` -> ``Monday``."""
    text = text.strip().strip("$").strip()
    for _ in range(3):
        match = _WRAPPERS.match(text)
        if not match:
            break
        text = match.group(1).strip()
    return text


def choice_letter(text: str) -> str | None:
    """The letter of a multiple-choice answer such as ``(B)``, ``B`` or ``(B) 12``, else None."""
    text = _TEXT_COMMANDS.sub("", text).replace("}", "").strip().strip("$").strip()
    if len(re.findall(r"\([A-E]\)", text)) > 1:  # "(A) or (B)" hedges: no single choice
        return None
    match = _CHOICE.match(text)
    return (match.group(1) or match.group(2)) if match else None


_EULER = re.compile(r"\\(?:mathrm|text|textrm|operatorname|mathit)\s*\{\s*e\s*\}")
# A comma followed by a space separates list items: "32, 349" is two numbers, "32,349" one.
_LIST_COMMA = re.compile(r",\s")


# A matrix row break written with one backslash ("4\-3"), as in gold answers that went through the
# MATH paper's normalisation (which turns "\\" into "\"): only before "-", a digit or ".".
_MATRIX = re.compile(r"(\\begin\{[pbvBV]?matrix\})(.*?)(\\end\{[pbvBV]?matrix\})", re.S)
_SINGLE_ROW_BREAK = re.compile(r"(?<!\\)\\(?=[-\d.])")


def _repair_matrix_rows(text: str) -> str:
    if "matrix" not in text:
        return text
    return _MATRIX.sub(
        lambda m: m.group(1) + _SINGLE_ROW_BREAK.sub(lambda _: "\\\\", m.group(2)) + m.group(3), text
    )


# Thousands separators inside a fraction's braces: \frac{1}{29,322,216}
_GROUPED_BRACE = re.compile(r"(?:(?<=frac)|(?<=\}))\{(\d{1,3}(?:,\d{3})+)\}")
_APPROX = re.compile(r"^\s*\\approx\s*")


def prepare(text: str) -> str:
    r"""Rewrite forms the parser gets wrong: ``\mathrm{e}`` -> ``e`` (Euler's number), matrix rows
    broken by a single backslash (``\begin{pmatrix}4\-3\end{pmatrix}``), thousands separators in
    braces (``\frac{1}{29,322,216}``), a leading ``\approx``, mixed numbers."""
    text = _GROUPED_BRACE.sub(lambda m: "{" + m.group(1).replace(",", "") + "}", _EULER.sub("e", text))
    return mixed_to_fraction(_repair_matrix_rows(_APPROX.sub("", text)))


def mixed_to_fraction(text: str) -> str:
    r"""Rewrite a mixed number (``2\frac{1}{2}``, ``-3 1/4``) as an improper ``\frac``; else unchanged."""
    match = _MIXED.match(text.strip())
    if not match:
        return text
    sign, whole = match.group(1), int(match.group(2))
    num = match.group(3) or match.group(4) or match.group(7)
    den = match.group(5) or match.group(6) or match.group(8)
    num_i, den_i = int(num), int(den)
    if den_i == 0 or num_i >= den_i:  # not a proper fraction: leave it to the parser
        return text
    return f"{sign}\\frac{{{whole * den_i + num_i}}}{{{den_i}}}"


_POINT_DECIMAL = re.compile(r"^[+-]?\d+\.\d+$")
_COMMA_DECIMAL = re.compile(r"^([+-]?\d+),(\d+)$")


def decimal_commas(gold: str, pred: str) -> tuple[str, str]:
    r"""Read a decimal comma (``1000,99``) as a point when the other answer is a decimal with a point.

    Only a whole answer of digits, one comma, digits; three digits after the comma stay a thousands
    separator (``1,222`` is 1222) unless the whole part is 0 (``0,111``). Against anything but a decimal
    with a point the comma keeps its other readings (``-2,1`` is a list, ``32,349`` a number).
    """

    def as_point(text: str) -> str | None:
        match = _COMMA_DECIMAL.match(text.strip())
        if not match or (len(match.group(2)) == 3 and match.group(1).lstrip("+-") != "0"):
            return None
        return f"{match.group(1)}.{match.group(2)}"

    if _POINT_DECIMAL.match(gold.strip()):
        pred = as_point(pred) or pred
    elif _POINT_DECIMAL.match(pred.strip()):
        gold = as_point(gold) or gold
    return gold, pred


_INT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)$")
_DECIMAL = re.compile(r"^[+-]?\d*\.\d+$")
_FRACTION = re.compile(r"^([+-]?)(?:\\frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))$")
_DEGREES = re.compile(r"\^\{?\\circ\}?$")
_ASSIGNMENT = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=(?!=)")


def _as_rational(text: str) -> tuple[list[Fraction], bool] | None:
    r"""Exact values of a plain number answer, and whether a decimal is involved; else None.

    Integers (with thousands separators), decimals, ``a/b`` and ``\frac{a}{b}``, optionally with a
    degree sign. A percentage has two readings, ``50\%`` -> [50, 1/2], as math-verify accepts both.
    """
    text = _DEGREES.sub("", text)
    percent = text.endswith("\\%")
    if percent:
        text = text[:-2]
    if _INT.match(text):
        value, decimal = Fraction(int(text.replace(",", ""))), False
    elif _DECIMAL.match(text):
        value, decimal = Fraction(text), True
    else:
        match = _FRACTION.match(text)
        if not match or int(match.group(3) or match.group(5)) == 0:
            return None
        sign, fnum, fden, snum, sden = match.groups()
        value, decimal = Fraction(int(fnum or snum), int(fden or sden)) * (-1 if sign == "-" else 1), False
    return ([value, value / 100] if percent else [value]), decimal


def fast_verdict(gold: str, pred: str) -> int | None:
    """A verdict decided without math-verify, or None when the pair needs a worker."""
    gold_n, pred_n = _normalize(gold), _normalize(pred)
    if "=" not in gold_n:
        pred_n = _ASSIGNMENT.sub("", pred_n, count=1)  # "x = 5" against "5"
    if gold_n and gold_n == pred_n:
        return EQUAL
    gold_choice = choice_letter(gold)
    if gold_choice is not None:
        return EQUAL if choice_letter(pred) == gold_choice else NOT_EQUAL
    gold_text = _unwrap_text(gold)
    if gold != gold_text and _WORDS.match(gold_text):  # a \text{...} word answer
        pred_text = _unwrap_text(pred)
        return (
            EQUAL if " ".join(pred_text.lower().split()) == " ".join(gold_text.lower().split()) else NOT_EQUAL
        )
    if _LIST_COMMA.search(gold) or _LIST_COMMA.search(pred):
        return None  # a list on either side: math-verify compares sets
    gold_q, pred_q = _as_rational(gold_n), _as_rational(pred_n)
    if gold_q is not None and pred_q is not None:
        if set(gold_q[0]) & set(pred_q[0]):
            return EQUAL
        if not (gold_q[1] or pred_q[1]):  # exact forms on both sides: no rounding question
            return NOT_EQUAL
    return None


# --------------------------------------------------------------------------------------------------
# Worker side (runs in a subprocess started by pool.py; imports math-verify only there)
# --------------------------------------------------------------------------------------------------

_WORKER_STATE: dict[str, Any] = {}


def worker_setup() -> None:
    """Import math-verify and build the extraction configs (once per worker)."""
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)  # math-verify warns that its own timeout is disabled
    from functools import lru_cache

    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    latex = LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all"
        ),
        boxed_match_priority=0,
        try_extract_without_anchor=False,
    )

    def parse_answer(text: str) -> list:
        parsed = parse("\\boxed{" + text + "}", extraction_config=[latex], parsing_timeout=None)
        if not parsed:
            parsed = parse(text, extraction_config=[ExprExtractionConfig()], parsing_timeout=None)
        return parsed

    _WORKER_STATE.update(parse=parse_answer, parse_gold=lru_cache(maxsize=4096)(parse_answer), verify=verify)


def worker_verify(gold: str, pred: str) -> int:
    """Verdict code for one pair; runs inside a worker process."""
    from sympy import Basic, MatrixBase

    gold_parsed = _WORKER_STATE["parse_gold"](gold)
    if not any(isinstance(g, (Basic, MatrixBase)) for g in gold_parsed):
        return GOLD_UNPARSEABLE
    pred_parsed = _WORKER_STATE["parse"](pred)
    if not any(isinstance(p, (Basic, MatrixBase)) for p in pred_parsed):
        # math-verify would fall back to comparing raw strings, which we already did
        return PRED_UNPARSEABLE
    if _braced_set_against_interval(gold, gold_parsed, pred, pred_parsed):
        return NOT_EQUAL
    return EQUAL if _WORKER_STATE["verify"](gold_parsed, pred_parsed, timeout_seconds=None) else NOT_EQUAL


def _braced_set_against_interval(gold: str, gold_parsed: list, pred: str, pred_parsed: list) -> bool:
    r"""True for ``\{1,2\}`` against ``(1,2)``: math-verify equates an open interval with a 2-set
    (it reads ``(1,2)`` as an ordered pair), but an explicitly braced set is neither."""
    from sympy import Interval

    def braced(text: str) -> bool:
        return _normalize(text).startswith("\\{")

    def interval(parsed: list) -> bool:
        return bool(parsed) and isinstance(parsed[0], Interval)

    return (braced(gold) and interval(pred_parsed)) or (braced(pred) and interval(gold_parsed))


WARMUP_PAIRS = [
    ("\\frac{1}{2}", "0.5"),
    ("(1,3]", "(1, 3]"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{bmatrix}1\\\\2\\end{bmatrix}"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("(x+1)^2", "x^2+2x+1"),
    ("50\\%", "x = 50"),
]


def _watch_parent(parent_pid: int) -> None:
    """Exit the worker when its parent has gone (the parent normally kills it first)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def worker_main() -> None:
    """Worker loop: read ``[id, gold, pred]`` JSON lines on stdin, write ``[id, code]`` lines."""
    parent_pid = int(sys.argv[2])
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed by a library goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if WORKER_MEMORY_MB > 0:
        try:
            import resource

            cap = WORKER_MEMORY_MB * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        except (ImportError, ValueError, OSError):
            pass
    worker_setup()
    for gold, pred in WARMUP_PAIRS:  # warm the parser's caches, so first real calls are not slow
        worker_verify(gold, pred)
    proto_out.write(b'"ready"\n')
    for line in sys.stdin.buffer:
        try:
            task_id, gold, pred = json.loads(line)
        except ValueError:
            continue
        try:
            code = worker_verify(gold, pred)
        except BaseException:  # noqa: BLE001 - MemoryError, RecursionError, sympy internals
            code = ERROR
        proto_out.write(json.dumps([task_id, code]).encode() + b"\n")


