r"""Math answer rewards for GRPO: a verifier that is right and never hangs.

``math_accuracy_reward`` scores a completion 1.0 when its *final* ``\boxed{...}`` answer is
mathematically equal to the gold answer, 0.0 otherwise, and ``None`` when the gold answer itself
cannot be parsed (TRL then skips that reward). It is built on math-verify / latex2sympy2_extended.

Equivalences it supports (in both directions, gold vs. prediction):

- fractions and decimals: ``\frac12`` = ``0.5`` = ``1/2``; ``\dfrac`` / ``\tfrac`` = ``\frac``;
  decimals are compared after rounding to 6 places (``\frac13`` = ``0.333333``, but not ``0.33``)
- radicals: ``\frac{\sqrt2}{2}`` = ``\frac{1}{\sqrt2}``, ``2\sqrt2`` = ``\sqrt8``
- assignments: ``x = 5`` = ``5``; ``y = 2x+3`` = ``2x+3``; ``x \in [2,5)`` = ``[2,5)``
- percent, degrees, thousands separators, units and currency: ``50\%`` = ``50`` = ``0.5``,
  ``30^\circ`` = ``30``, ``1,000`` = ``1000``, ``5\text{ cm}`` = ``5``, ``\$18.90`` = ``18.9``
- intervals and sets: ``(1,3]`` (not ``[1,3]``), ``\{1,2\}`` = ``\{2,1\}`` = ``1,2``,
  unions of intervals, ``(-\infty, 0)``
- matrices and vectors: ``pmatrix`` = ``bmatrix`` entry by entry
- symbolic expressions up to algebraic equivalence: ``(x+1)^2`` = ``x^2+2x+1``,
  ``\frac{x^2-1}{x-1}`` = ``x+1``, ``\sin^2x+\cos^2x`` = ``1`` (variable names matter)
- mixed numbers: ``2\frac12`` = ``2 1/2`` = ``\frac52`` = ``2.5`` (a whole number directly
  followed by a proper numeric fraction, as the whole answer)
- text choices: ``\text{(B)}`` = ``(B)`` = ``B`` = ``\textbf{(B) } 12``; other text answers such as
  ``\text{Monday}`` compare case-insensitively as words

Never hangs: every verification runs in a supervised worker process with a hard time limit
(``timeout_seconds`` argument, else ``prerl_trl.rewards.DEFAULT_TIMEOUT_SECONDS``, else the
``PRERL_VERIFY_TIMEOUT`` environment variable, default 3 s). A worker that overruns is killed and
replaced, and the verdict is 0.0. No signals are used, so this works off the main thread, in
DataLoader workers and under ``accelerate launch``. Workers are plain ``python -c`` subprocesses that
load this file by path: they never import the training script's ``__main__``, torch or TRL, and
they boot in about a second (the deadline starts once a worker is ready), and one warm spare
stands by so a killed worker's replacement is never waited for.

Throughput: a batch is verified in parallel on ``min(CPUs // LOCAL_WORLD_SIZE, 8)`` workers (set
``PRERL_VERIFY_WORKERS`` to override), created lazily, reused across calls and killed at exit.
Cheap checks run first in the calling process: boxed answers longer than ``MAX_ANSWER_CHARS``
(``PRERL_VERIFY_MAX_CHARS``, default 1000) score 0.0; string-equal normalised answers, plain
numbers (integers, decimals, ``a/b``, ``\frac{a}{b}``, percentages, degrees, ``x = n``), choice
letters and text words are decided without a worker, in agreement with math-verify; identical
(gold, prediction) pairs in a batch are verified once. Each worker's address space is capped at
``PRERL_VERIFY_MEMORY_MB`` (default 4096) so a huge power raises MemoryError instead of swapping.
Linux and macOS only (the pool waits on pipes with ``selectors``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_ANSWER_CHARS",
    "extract_boxed_answer",
    "format_reward",
    "math_accuracy_reward",
    "shutdown_verifier",
    "verify_answers",
    "warmup_verifier",
]

#: Hard limit in seconds for one verification (parse + compare) in a worker.
DEFAULT_TIMEOUT_SECONDS: float = float(os.environ.get("PRERL_VERIFY_TIMEOUT", "3"))
#: Boxed answers (and gold answers) longer than this are not parsed: 0.0 (resp. None).
MAX_ANSWER_CHARS: int = int(os.environ.get("PRERL_VERIFY_MAX_CHARS", "1000"))
#: Address-space cap of each worker process in MiB (0 disables it).
WORKER_MEMORY_MB: int = int(os.environ.get("PRERL_VERIFY_MEMORY_MB", "4096"))
#: Seconds a freshly started worker may take to import math-verify before it is replaced.
WORKER_BOOT_TIMEOUT: float = 60.0

# Verdict codes, shared by the parent and the workers.
EQUAL, NOT_EQUAL, GOLD_UNPARSEABLE, PRED_UNPARSEABLE, ERROR, TIMEOUT, NO_ANSWER = 1, 0, -1, -2, -3, -4, -5


# --------------------------------------------------------------------------------------------------
# String-level helpers (run in the calling process; cheap and linear in the input length)
# --------------------------------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_MAX_BOXED_CANDIDATES = 8


def _balanced_group(text: str, start: int, limit: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``text[start]``, or None (unbalanced/too long)."""
    depth, i, end = 0, start, min(len(text), start + limit + 2)
    while i < end:
        ch = text[i]
        if ch == "\\":
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


def extract_boxed_answer(text: str, max_chars: int | None = None) -> str | None:
    r"""Return the content of the last complete ``\boxed{...}`` (or ``\fbox{...}``) in ``text``.

    ``\boxed 5`` (no braces) is accepted too. Returns None when there is no complete boxed answer
    or when it is longer than ``max_chars`` (default ``MAX_ANSWER_CHARS``). Linear time: at most a
    few candidates are scanned, each up to ``max_chars`` characters.
    """
    if not isinstance(text, str) or "\\" not in text:
        return None
    limit = MAX_ANSWER_CHARS if max_chars is None else max_chars
    starts = [m.end() for m in _BOXED.finditer(text)]
    for pos in reversed(starts[-_MAX_BOXED_CANDIDATES:]):
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == "{":
            end = _balanced_group(text, pos, limit)
            if end is not None:
                return text[pos + 1 : end - 1].strip()
        else:
            token = re.match(r"[^\s$]{1,64}", text[pos:])
            if token:
                return token.group(0)
    return None


def _completion_text(completion: Any) -> str:
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


def _clean_unicode(text: str) -> str:
    """Replace lone surrogates and other unencodable code points, drop NULs."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _gold_from_answer(answer: Any) -> str | None:
    r"""Gold answer from an ``answer`` column: bare LaTeX (or a number); a ``\boxed{}`` inside wins."""
    if answer is None:
        return None
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    text = _clean_unicode(str(answer)).strip()
    boxed = extract_boxed_answer(text, max_chars=len(text))
    return boxed if boxed is not None else text


def _gold_from_solution(solution: Any) -> str | None:
    r"""Gold answer from a worked ``solution``: its last ``\boxed{}``, a GSM8K ``#### n`` tail, or a short bare answer."""
    if solution is None:
        return None
    text = _clean_unicode(str(solution)).strip()
    boxed = extract_boxed_answer(text, max_chars=len(text))
    if boxed is not None:
        return boxed
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    return text if len(text) <= 100 else None


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


def _choice(text: str) -> str | None:
    """The letter of a multiple-choice answer such as ``(B)``, ``B`` or ``(B) 12``, else None."""
    text = _TEXT_COMMANDS.sub("", text).replace("}", "").strip().strip("$").strip()
    if len(re.findall(r"\([A-E]\)", text)) > 1:  # "(A) or (B)" hedges: no single choice
        return None
    match = _CHOICE.match(text)
    return (match.group(1) or match.group(2)) if match else None


def _mixed_to_fraction(text: str) -> str:
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


def _fast_verdict(gold: str, pred: str) -> int | None:
    """A verdict decided without math-verify, or None when the pair needs a worker."""
    gold_n, pred_n = _normalize(gold), _normalize(pred)
    if "=" not in gold_n:
        pred_n = _ASSIGNMENT.sub("", pred_n, count=1)  # "x = 5" against "5"
    if gold_n and gold_n == pred_n:
        return EQUAL
    gold_choice = _choice(gold)
    if gold_choice is not None:
        return EQUAL if _choice(pred) == gold_choice else NOT_EQUAL
    gold_text = _unwrap_text(gold)
    if gold != gold_text and _WORDS.match(gold_text):  # a \text{...} word answer
        pred_text = _unwrap_text(pred)
        return (
            EQUAL if " ".join(pred_text.lower().split()) == " ".join(gold_text.lower().split()) else NOT_EQUAL
        )
    gold_q, pred_q = _as_rational(gold_n), _as_rational(pred_n)
    if gold_q is not None and pred_q is not None:
        if set(gold_q[0]) & set(pred_q[0]):
            return EQUAL
        if not (gold_q[1] or pred_q[1]):  # exact forms on both sides: no rounding question
            return NOT_EQUAL
    return None


# --------------------------------------------------------------------------------------------------
# Worker side (runs in a subprocess started by _Worker; imports math-verify only there)
# --------------------------------------------------------------------------------------------------

_WORKER_STATE: dict[str, Any] = {}


def _worker_setup() -> None:
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


def _worker_verify(gold: str, pred: str) -> int:
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


_WARMUP_PAIRS = [
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


def _worker_main() -> None:
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
    _worker_setup()
    for gold, pred in _WARMUP_PAIRS:  # warm the parser's caches, so first real calls are not slow
        _worker_verify(gold, pred)
    proto_out.write(b'"ready"\n')
    for line in sys.stdin.buffer:
        try:
            task_id, gold, pred = json.loads(line)
        except ValueError:
            continue
        try:
            code = _worker_verify(gold, pred)
        except BaseException:  # noqa: BLE001 - MemoryError, RecursionError, sympy internals
            code = ERROR
        proto_out.write(json.dumps([task_id, code]).encode() + b"\n")


_BOOTSTRAP = (
    "import sys, importlib.util as u\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "s = u.spec_from_file_location('_prerl_verify_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m)\n"
    "m._worker_main()\n"
)


# --------------------------------------------------------------------------------------------------
# Parent side: a bounded, lazily created, thread-safe pool of supervised workers
# --------------------------------------------------------------------------------------------------


class _Worker:
    """One verifier subprocess, owned by at most one calling thread at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, os.path.abspath(__file__), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in the terminal goes to the trainer, not to workers
            close_fds=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.born = time.monotonic()
        self.ready = False
        self.task: int | None = None
        self.started: float | None = None

    def send(self, task: int, gold: str, pred: str) -> None:
        assert self.proc.stdin is not None
        self.task, self.started = task, (time.monotonic() if self.ready else None)
        try:
            self.proc.stdin.write(json.dumps([task, gold, pred]).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # the worker died; the next read sees EOF and replaces it
            pass

    def read(self) -> list | None:
        """Complete messages available now; None on EOF (the worker died)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def deadline(self, timeout: float) -> float | None:
        if not self.ready:
            return self.born + WORKER_BOOT_TIMEOUT
        if self.task is not None and self.started is not None:
            return self.started + timeout
        return None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001
                pass


def _default_workers() -> int:
    env = os.environ.get("PRERL_VERIFY_WORKERS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(8, cpus // max(1, local_world)))


class _VerifierPool:
    """Runs at most ``size`` verifications at once, on ``size + 1`` worker processes.

    Calls check workers out, so concurrent threads never share one. The extra process is a warm
    spare: when a worker is killed after a timeout, the next verification takes a ready worker
    instead of waiting for the replacement to boot.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.capacity = size + 1
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[_Worker] = []
        self.count = 0  # live worker processes
        self.busy = 0  # workers checked out by calls
        self.boot_failures = 0

    def _checkout(self, wanted: int, block: bool) -> list[_Worker]:
        with self.cond:
            while True:
                self._poll_idle()
                self.idle.sort(key=lambda w: w.ready)  # ready workers last, so they are popped first
                allowed = min(wanted, self.size - self.busy)
                taken = [self.idle.pop() for _ in range(min(allowed, len(self.idle)))]
                while len(taken) < allowed and self.count < self.capacity:
                    taken.append(_Worker())
                    self.count += 1
                if not self.idle and self.count < self.capacity:
                    self.idle.append(_Worker())  # keep the spare booting in the background
                    self.count += 1
                self.busy += len(taken)
                if taken or not block:
                    return taken
                self.cond.wait(0.05)

    def _poll_idle(self) -> None:
        """Notice idle workers that finished booting, and replace idle workers that died."""
        for i, w in enumerate(self.idle):
            if not w.ready:
                messages = w.read()
                if messages is None or time.monotonic() > w.born + WORKER_BOOT_TIMEOUT:
                    self.boot_failures += 1
                    self.idle[i] = self._replace(w)
                elif "ready" in messages:
                    w.ready, self.boot_failures = True, 0

    def _release(self, workers: list[_Worker]) -> None:
        with self.cond:
            self.idle.extend(workers)
            self.busy -= len(workers)
            self.cond.notify_all()

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        return _Worker()

    def run(self, pairs: list[tuple[str, str]], timeout: float) -> list[int]:
        """Verdict code for each (gold, pred) pair, each one bounded by ``timeout`` seconds of work."""
        results = [ERROR] * len(pairs)
        pending = deque(range(len(pairs)))
        held: list[_Worker] = []
        try:
            while pending or any(w.task is not None for w in held):
                if pending and self.boot_failures >= 3:
                    logger.error("math verifier workers fail to start; scoring %d answers 0.0", len(pending))
                    self.boot_failures = 0
                    pending.clear()
                    continue
                free = [w for w in held if w.task is None]
                if len(pending) > len(free):
                    held += self._checkout(len(pending) - len(free), block=not held)
                for w in held:
                    if w.task is None and pending:
                        task = pending.popleft()
                        w.send(task, *pairs[task])
                if not pending:  # give back what this call no longer needs
                    spare = [w for w in held if w.task is None]
                    held = [w for w in held if w.task is not None]
                    self._release(spare)
                self._wait(held, timeout, results, pending)
        finally:
            busy = [w for w in held if w.task is not None]
            for w in busy:  # interrupted mid-task (KeyboardInterrupt): never reuse a busy worker
                held.remove(w)
                w.kill()
                with self.cond:
                    self.count -= 1
                    self.busy -= 1
            self._release(held)
        return results

    def _wait(self, held: list[_Worker], timeout: float, results: list[int], pending: deque) -> None:
        """Wait for the first message or deadline among ``held``; update results; replace bad workers."""
        now = time.monotonic()
        deadlines = [d for w in held if (d := w.deadline(timeout)) is not None]
        wait_for = max(0.0, min(deadlines) - now) if deadlines else 0.05
        if pending:
            wait_for = min(wait_for, 0.05)  # poll the pool for workers released by other threads
        with selectors.DefaultSelector() as sel:
            for w in held:
                sel.register(w.fd, selectors.EVENT_READ, w)
            events = sel.select(wait_for) if held else (time.sleep(wait_for) or [])
        for key, _ in events:
            w = key.data
            messages = w.read()
            if messages is None:  # the worker died (segfault, OOM kill)
                self._fail(w, held, results, pending, ERROR)
                continue
            for msg in messages:
                if msg == "ready":
                    w.ready, self.boot_failures = True, 0
                    if w.task is not None:
                        w.started = time.monotonic()
                elif isinstance(msg, list) and msg[0] == w.task:
                    results[msg[0]] = msg[1]
                    w.task = w.started = None
        now = time.monotonic()
        for w in list(held):
            deadline = w.deadline(timeout)
            if deadline is not None and now > deadline:
                self._fail(w, held, results, pending, TIMEOUT)

    def _fail(self, w: _Worker, held: list[_Worker], results: list[int], pending: deque, code: int) -> None:
        """Kill ``w``; its task gets ``code`` (or is retried when the worker never started)."""
        if not w.ready:
            self.boot_failures += 1
            if w.task is not None:
                pending.appendleft(w.task)
        elif w.task is not None:
            results[w.task] = code
        held[held.index(w)] = self._replace(w)

    def shutdown(self) -> None:
        with self.cond:
            workers, self.idle = self.idle, []
            self.count -= len(workers)
        if os.getpid() == self.pid:  # never kill a parent's workers from a forked child
            for w in workers:
                w.kill()


_POOL: _VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def _get_pool() -> _VerifierPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # lazily, and afresh after a fork
            _POOL = _VerifierPool(_default_workers())
        return _POOL


def shutdown_verifier() -> None:
    """Kill the verifier workers (also registered with ``atexit``); the next call starts new ones."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown()


atexit.register(shutdown_verifier)


def warmup_verifier(timeout: float = WORKER_BOOT_TIMEOUT) -> None:
    """Start every worker of the pool (and the spare) and wait until each has imported math-verify."""
    pool = _get_pool()
    deadline = time.monotonic() + timeout
    pool.run([("1", f"\\frac{{{i + 2}}}{{{i + 2}}}") for i in range(pool.size)], timeout)
    while time.monotonic() < deadline:
        with pool.cond:
            pool._poll_idle()
            if all(w.ready for w in pool.idle):
                return
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def verify_answers(
    golds: Sequence[str | None], preds: Sequence[str | None], timeout_seconds: float | None = None
) -> list[int]:
    """Verdict codes (``EQUAL``, ``NOT_EQUAL``, ``GOLD_UNPARSEABLE``, ...) for bare answer strings.

    ``golds[i]`` and ``preds[i]`` are answers without ``\\boxed``; a None prediction is ``NO_ANSWER``
    and a None gold is ``GOLD_UNPARSEABLE``. Identical pairs are verified once.
    """
    timeout = DEFAULT_TIMEOUT_SECONDS if timeout_seconds is None else float(timeout_seconds)
    codes: list[int | None] = [None] * len(golds)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (gold, pred) in enumerate(zip(golds, preds, strict=True)):
        if gold is None or not gold.strip() or len(gold) > 10 * MAX_ANSWER_CHARS:
            codes[i] = GOLD_UNPARSEABLE
        elif pred is None or not pred.strip():
            codes[i] = NO_ANSWER
        elif len(pred) > MAX_ANSWER_CHARS:
            codes[i] = PRED_UNPARSEABLE
        else:
            gold_c, pred_c = (
                _mixed_to_fraction(_clean_unicode(gold)),
                _mixed_to_fraction(_clean_unicode(pred)),
            )
            try:
                codes[i] = _fast_verdict(gold_c, pred_c)
            except Exception:  # noqa: BLE001 - a pre-filter must never crash the training loop
                codes[i] = None
            if codes[i] is None:
                todo.setdefault((gold_c, pred_c), []).append(i)
    if todo:
        pairs = list(todo)
        try:
            verdicts = _get_pool().run(pairs, timeout)
        except Exception:  # noqa: BLE001
            logger.exception("math verifier failed; scoring %d answers 0.0", len(pairs))
            verdicts = [ERROR] * len(pairs)
        for pair, verdict in zip(pairs, verdicts, strict=True):
            for i in todo[pair]:
                codes[i] = verdict
    return [ERROR if c is None else c for c in codes]


def _check_lengths(completions: Sequence, **columns: Sequence | None) -> None:
    for name, column in columns.items():
        if column is not None and len(column) != len(completions):
            raise ValueError(
                f"math_accuracy_reward: `completions` has {len(completions)} items but `{name}` has "
                f"{len(column)}; pass exactly one gold {name} per completion."
            )


def math_accuracy_reward(
    completions: Sequence[Any],
    answer: Sequence[Any] | None = None,
    solution: Sequence[Any] | None = None,
    *,
    timeout_seconds: float | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    log_extra: Callable[[str, list], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    r"""1.0 when the final ``\boxed{}`` of a completion equals the gold answer, else 0.0; None to skip.

    A TRL GRPO reward function: TRL passes ``completions`` plus every dataset column as keyword
    arguments (and ``trainer_state``, ``log_extra``, ``log_metric``), so extra kwargs are ignored.

    Args:
        completions: plain strings, or conversations (lists of ``{"role", "content"}`` dicts, whose
            last assistant message is scored).
        answer: bare gold answers (``\frac12``, ``(1,3]``, ``\text{(B)}``, ``72``). Used when given.
        solution: worked solutions; the gold answer is their last ``\boxed{}`` (or the text after
            GSM8K's ``####``). Used when ``answer`` is None.
        timeout_seconds: hard limit per verification (default ``DEFAULT_TIMEOUT_SECONDS``).
        log_metric: TRL's metric logger; receives ``math_verify/timeouts``,
            ``math_verify/unparseable`` (prediction could not be parsed or was too long),
            ``math_verify/no_answer`` (no boxed answer) and ``math_verify/gold_unparseable`` counts.
        log_extra: TRL's completions-table logger; receives the ``gold_answer`` and ``boxed_answer`` columns.

    Returns:
        One reward per completion: 1.0, 0.0, or None when the gold answer cannot be parsed.
        See the module docstring for the supported equivalences. Never raises on bad model
        output: timeouts, crashes and garbage score 0.0.
    """
    if answer is None and solution is None:
        raise ValueError(
            "math_accuracy_reward needs gold answers: pass `answer=` (bare LaTeX, e.g. a dataset "
            "column named 'answer') or `solution=` (worked solutions containing \\boxed{})."
        )
    _check_lengths(completions, answer=answer, solution=solution)
    if answer is not None:
        golds = [_gold_from_answer(a) for a in answer]
    else:
        golds = [_gold_from_solution(s) for s in solution]  # type: ignore[union-attr]
    texts = [_clean_unicode(_completion_text(c)) for c in completions]
    preds = [extract_boxed_answer(t) for t in texts]
    codes = verify_answers(golds, preds, timeout_seconds)
    for i, code in enumerate(codes):
        if code == NO_ANSWER and preds[i] is None and _BOXED.search(texts[i]):
            codes[i] = PRED_UNPARSEABLE  # a boxed answer that is unbalanced or too long

    rewards: list[float | None] = []
    for code in codes:
        rewards.append(None if code == GOLD_UNPARSEABLE else 1.0 if code == EQUAL else 0.0)
    if log_metric is not None:
        log_metric("math_verify/timeouts", float(codes.count(TIMEOUT)))
        log_metric("math_verify/unparseable", float(codes.count(PRED_UNPARSEABLE) + codes.count(ERROR)))
        log_metric("math_verify/no_answer", float(codes.count(NO_ANSWER)))
        log_metric("math_verify/gold_unparseable", float(codes.count(GOLD_UNPARSEABLE)))
    if log_extra is not None:
        log_extra("gold_answer", [g if g is not None else "[unparseable]" for g in golds])
        log_extra("boxed_answer", [p if p is not None else "[none]" for p in preds])
    return rewards


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    r"""1.0 when the completion contains a complete, non-empty ``\boxed{...}`` answer, else 0.0."""
    return [1.0 if extract_boxed_answer(_completion_text(c)) else 0.0 for c in completions]
