r"""The reward functions: ``math_accuracy_reward`` (math-verify), ``math_string_match_reward``
(the Hendrycks-MATH string match the authors trained with) and ``format_reward``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import extraction
from .equivalence import (
    EQUAL,
    ERROR,
    GOLD_UNPARSEABLE,
    NO_ANSWER,
    NOT_EQUAL,
    PRED_UNPARSEABLE,
    TIMEOUT,
    decimal_commas,
    fast_verdict,
    prepare,
)
from .extraction import (
    BOXED,
    answer_candidates,
    clean_unicode,
    completion_text,
    extract_final_answer,
    gold_from_answer,
    gold_from_solution,
    several_values,
)
from .hendrycks import hendrycks_equivalent
from .pool import get_pool

logger = logging.getLogger(__name__)

#: Hard limit in seconds for one verification (parse + compare) in a worker.
DEFAULT_TIMEOUT_SECONDS: float = float(os.environ.get("PRERL_VERIFY_TIMEOUT", "3"))


def _package_setting(name: str) -> Any:
    """A setting read at call time from ``prerl_trl.rewards``, where users override it."""
    package = sys.modules.get(__package__ or "")
    return getattr(package, name, None) if package is not None else None


def _max_chars() -> int:
    value = _package_setting("MAX_ANSWER_CHARS")
    return extraction.MAX_ANSWER_CHARS if value is None else int(value)


def verify_answers(
    golds: Sequence[str | None], preds: Sequence[str | None], timeout_seconds: float | None = None
) -> list[int]:
    """Verdict codes (``EQUAL``, ``NOT_EQUAL``, ``GOLD_UNPARSEABLE``, ...) for bare answer strings.

    ``golds[i]`` and ``preds[i]`` are answers without ``\\boxed``; a None prediction is ``NO_ANSWER``
    and a None gold is ``GOLD_UNPARSEABLE``. Identical pairs are verified once.
    """
    if timeout_seconds is None:
        setting = _package_setting("DEFAULT_TIMEOUT_SECONDS")
        timeout_seconds = DEFAULT_TIMEOUT_SECONDS if setting is None else setting
    timeout, max_chars = float(timeout_seconds), _max_chars()
    codes: list[int | None] = [None] * len(golds)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (gold, pred) in enumerate(zip(golds, preds, strict=True)):
        if gold is None or not gold.strip() or len(gold) > 10 * max_chars:
            codes[i] = GOLD_UNPARSEABLE
        elif pred is None or not pred.strip():
            codes[i] = NO_ANSWER
        elif len(pred) > max_chars:
            codes[i] = PRED_UNPARSEABLE
        else:
            gold_c, pred_c = decimal_commas(prepare(clean_unicode(gold)), prepare(clean_unicode(pred)))
            try:
                codes[i] = fast_verdict(gold_c, pred_c)
            except Exception:  # noqa: BLE001 - a pre-filter must never crash the training loop
                codes[i] = None
            if codes[i] is None:
                todo.setdefault((gold_c, pred_c), []).append(i)
    if todo:
        pairs = list(todo)
        try:
            verdicts = get_pool().run(pairs, timeout)
        except Exception:  # noqa: BLE001
            logger.exception("math verifier failed; scoring %d answers 0.0", len(pairs))
            verdicts = [ERROR] * len(pairs)
        for pair, verdict in zip(pairs, verdicts, strict=True):
            for i in todo[pair]:
                codes[i] = verdict
    return [ERROR if c is None else c for c in codes]


def _golds_and_preds(
    name: str,
    completions: Sequence[Any],
    answer: Sequence[Any] | None,
    solution: Sequence[Any] | None,
    extract: Callable[[str, int], str | None] = extract_final_answer,
) -> tuple[list[str | None], list[str | None], list[str]]:
    """Check the columns, then return gold answers, final boxed answers and completion texts."""
    if answer is None and solution is None:
        raise ValueError(
            f"{name} needs gold answers: pass `answer=` (bare LaTeX, e.g. a dataset "
            "column named 'answer') or `solution=` (worked solutions containing \\boxed{})."
        )
    for column_name, column in (("answer", answer), ("solution", solution)):
        if column is not None and len(column) != len(completions):
            raise ValueError(
                f"{name}: `completions` has {len(completions)} items but `{column_name}` has "
                f"{len(column)}; pass exactly one gold {column_name} per completion."
            )
    if answer is not None:
        golds = [gold_from_answer(a) for a in answer]
    else:
        golds = [gold_from_solution(s) for s in solution]  # type: ignore[union-attr]
    texts = [clean_unicode(completion_text(c)) for c in completions]
    max_chars = _max_chars()
    preds = [extract(t, max_chars) for t in texts]
    return golds, preds, texts


def _report(
    codes: list[int],
    golds: list[str | None],
    preds: list[str | None],
    log_metric: Callable[[str, float], None] | None,
    log_extra: Callable[[str, list], None] | None,
    prefix: str = "math_verify",
) -> list[float | None]:
    if log_metric is not None:
        if prefix == "math_verify":
            log_metric(f"{prefix}/timeouts", float(codes.count(TIMEOUT)))
        log_metric(f"{prefix}/unparseable", float(codes.count(PRED_UNPARSEABLE) + codes.count(ERROR)))
        log_metric(f"{prefix}/no_answer", float(codes.count(NO_ANSWER)))
        log_metric(f"{prefix}/gold_unparseable", float(codes.count(GOLD_UNPARSEABLE)))
    if log_extra is not None:
        log_extra("gold_answer", [g if g is not None else "[unparseable]" for g in golds])
        log_extra("boxed_answer", [p if p is not None else "[none]" for p in preds])
    return [None if code == GOLD_UNPARSEABLE else 1.0 if code == EQUAL else 0.0 for code in codes]


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
        See the package docstring for the supported equivalences. Never raises on bad model
        output: timeouts, crashes and garbage score 0.0.
    """
    golds, preds, texts = _golds_and_preds("math_accuracy_reward", completions, answer, solution)
    max_chars = _max_chars()
    readings = [
        answer_candidates(text, max_chars, several=gold is not None and several_values(gold))
        for text, gold in zip(texts, golds, strict=True)
    ]
    pairs = [(gold, reading) for gold, rs in zip(golds, readings, strict=True) for reading in rs]
    verdicts = iter(verify_answers([g for g, _ in pairs], [r for _, r in pairs], timeout_seconds))
    codes = []
    for i, rs in enumerate(readings):
        found = [next(verdicts) for _ in rs]
        preds[i] = rs[0] if rs else None
        if not found:  # no answer: GOLD_UNPARSEABLE or NO_ANSWER, decided without a worker
            found = verify_answers([golds[i]], [None])
            if found[0] == NO_ANSWER and BOXED.search(texts[i]):
                found = [PRED_UNPARSEABLE]  # a boxed answer that is unbalanced or too long
        codes.append(EQUAL if EQUAL in found else found[0])
    return _report(codes, golds, preds, log_metric, log_extra)


def math_string_match_reward(
    completions: Sequence[Any],
    answer: Sequence[Any] | None = None,
    solution: Sequence[Any] | None = None,
    *,
    log_metric: Callable[[str, float], None] | None = None,
    log_extra: Callable[[str, list], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    r"""1.0 when the final ``\boxed{}`` equals the gold answer under the Hendrycks-MATH string normalisation.

    The reward of the PreRL / DSRL authors' runs (verl's default math reward, the ``is_equiv`` rule
    of the MATH paper; see :mod:`prerl_trl.rewards.hendrycks` for the rules). Stricter than
    :func:`math_accuracy_reward`: ``\frac{2}{4}`` is not ``\frac12``, ``1,000`` is not ``1000``,
    ``(x+1)^2`` is not ``x^2+2x+1``; ``0.5`` = ``\frac12`` and ``x = 5`` = ``5`` still hold.

    Same signature, columns and None handling as :func:`math_accuracy_reward` (None when the gold
    answer is missing or empty; 0.0 for a missing, unbalanced or over-long box); its metrics are
    ``math_string_match/{unparseable,no_answer,gold_unparseable}``. As the authors' reward, only
    the last box counts (an answer split over several boxes is not joined). It is
    pure string work in the calling process, so it cannot hang and needs no worker processes;
    ``timeout_seconds`` is accepted and ignored.
    """
    golds, preds, texts = _golds_and_preds(
        "math_string_match_reward", completions, answer, solution, extract=extraction.extract_boxed_answer
    )
    max_chars = _max_chars()
    codes = []
    for gold, pred, text in zip(golds, preds, texts, strict=True):
        if gold is None or not gold.strip() or len(gold) > 10 * max_chars:
            codes.append(GOLD_UNPARSEABLE)
        elif pred is None or not pred.strip():
            codes.append(PRED_UNPARSEABLE if pred is None and BOXED.search(text) else NO_ANSWER)
        else:
            codes.append(EQUAL if hendrycks_equivalent(pred, gold) else NOT_EQUAL)
    return _report(codes, golds, preds, log_metric, log_extra, prefix="math_string_match")


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    r"""1.0 when the completion contains a complete, non-empty ``\boxed{...}`` answer, else 0.0."""
    return [1.0 if extract_final_answer(completion_text(c)) else 0.0 for c in completions]


#: Reward functions by the short name recipes use (``reward_funcs: [math_string_match]``).
REWARD_FUNCTIONS: dict[str, Callable[..., list]] = {
    "math_accuracy": math_accuracy_reward,
    "math_string_match": math_string_match_reward,
    "format": format_reward,
}
