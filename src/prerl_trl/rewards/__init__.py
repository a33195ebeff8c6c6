r"""Math answer rewards for GRPO: verifiers that are right and never hang.

Two answer checks, selectable by name in a recipe (``reward_funcs: [math_accuracy]`` or
``[math_string_match]``) and in ``prerl-trl eval --verifier``:

- ``math_accuracy_reward`` (``math_accuracy``, the default): math-verify with the fixes below;
- ``math_string_match_reward`` (``math_string_match``): the Hendrycks-MATH normalised string match
  on the last box, the reward of the PreRL / DSRL authors' runs (see ``hendrycks.py``).

``math_accuracy_reward`` scores a completion 1.0 when its *final* ``\boxed{...}`` answer (or a final
``Final Answer: The final answer is $X$.`` line, the Minerva format) is mathematically equal to the gold
answer, 0.0 otherwise, and ``None`` when the gold answer itself cannot be parsed (TRL then skips that
reward). It is built on math-verify / latex2sympy2_extended. On math-verify's own test tables and the
Hendrycks MATH ``is_equiv`` tests it agrees with the published verdicts at least as often as plain
math-verify (``tests/test_answer_agreement.py``, ``benchmarks/answer_agreement.py``).

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
- lists: a comma followed by a space separates items, so ``32, 349`` is the list {32, 349}, not
  32349 (``32,349`` and ``32,\!349`` are 32349). A bare list is unordered (``4, 10, -2`` = ``10, 4, -2``:
  MATH asks for such lists as "all solutions, separated by commas"); a tuple ``(4, 10, -2)`` is ordered
- decimal commas: ``1000,99`` = ``1000.99`` and ``1,22`` = ``1.22`` when the other answer is a decimal
  with a point; three digits after the comma stay a thousands separator (``1,222`` = 1222), unless the
  whole part is 0 (``0,111`` = ``0.111``)
- an answer split over adjacent boxes is one answer: ``\boxed{1}, \boxed{2}`` (separated only by
  commas, semicolons, spaces, ``$``, ``\(`` ``\)``, "and" or "or") is read as ``\boxed{1, 2}``, in the
  completion and in the gold; a box followed by other words starts a new answer, so a corrected
  ``\boxed{3} ... \boxed{4}`` scores the last box, and when the gold has several values (a list) all
  boxes together are a second reading: ``\boxed{(3, 3)} for part (a) and \boxed{(1, 1)}`` =
  ``(3, 3), (1, 1)``. Several boxes count only when together they equal the gold, so boxing every
  candidate (or listing them in one box, or "3 or 5") scores 0 against a single-valued gold: the reward
  is never easier to game than the last-box rule
- systems and named equations: ``y_1 = \boxed{...}`` and ``y_2 = \boxed{...}`` against
  ``y_{1}=..., y_{2}=...``; ``W(n) = 1 \text{ and } W(n) = -1``
- Euler's number: ``\mathrm{e}`` (also ``\text{e}``, ``\operatorname{e}``) = ``e``

Never hangs: every verification runs in a supervised worker process with a hard time limit
(``timeout_seconds`` argument, else ``prerl_trl.rewards.DEFAULT_TIMEOUT_SECONDS``, else the
``PRERL_VERIFY_TIMEOUT`` environment variable, default 3 s). A worker that overruns is killed and
replaced, and the verdict is 0.0. No signals are used, so this works off the main thread, in
DataLoader workers and under ``accelerate launch``. Workers are plain ``python -c`` subprocesses that
load ``equivalence.py`` by path: they never import the training script's ``__main__``, torch or TRL, and
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

Layout: ``extraction.py`` (finding the boxed and gold answers), ``equivalence.py`` (the exact
pre-check and the math-verify side of the workers), ``pool.py`` (the worker processes),
``hendrycks.py`` (the string match) and ``functions.py`` (the reward functions).
"""

from __future__ import annotations

from .equivalence import (
    EQUAL,
    ERROR,
    GOLD_UNPARSEABLE,
    NO_ANSWER,
    NOT_EQUAL,
    PRED_UNPARSEABLE,
    TIMEOUT,
)
from .extraction import MAX_ANSWER_CHARS, extract_boxed_answer, extract_final_answer
from .functions import (
    DEFAULT_TIMEOUT_SECONDS,
    REWARD_FUNCTIONS,
    format_reward,
    math_accuracy_reward,
    math_string_match_reward,
    verify_answers,
)
from .hendrycks import hendrycks_equivalent, hendrycks_normalize
from .pool import WORKER_BOOT_TIMEOUT, shutdown_verifier, warmup_verifier

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "EQUAL",
    "ERROR",
    "GOLD_UNPARSEABLE",
    "MAX_ANSWER_CHARS",
    "NOT_EQUAL",
    "NO_ANSWER",
    "PRED_UNPARSEABLE",
    "REWARD_FUNCTIONS",
    "TIMEOUT",
    "WORKER_BOOT_TIMEOUT",
    "extract_boxed_answer",
    "extract_final_answer",
    "format_reward",
    "hendrycks_equivalent",
    "hendrycks_normalize",
    "math_accuracy_reward",
    "math_string_match_reward",
    "shutdown_verifier",
    "verify_answers",
    "warmup_verifier",
]
