"""Counts of reasoning behaviours in completions: *transition* and *reflection* thoughts.

The paper reports that NSR-PreRL raises "transition" thoughts 14.89x and "reflection" thoughts 6.54x, but it does not
publish the keyword lists behind those counts. The lists below are **ours**: they are the single place where the
behaviours are defined in this package (the trainer's `behaviors/*` metrics, `prerl-trl eval`'s results.json and
`behavior_ratio` all use them). Absolute counts are therefore not comparable with the paper's; ratios between two
checkpoints measured with the same lists are what this module is for.

Matching is case-insensitive and on word boundaries ("awaiting" does not count as "wait"); inside a phrase any run of
whitespace matches, and curly apostrophes match straight ones. Within one category the phrases are matched
left to right without overlap, longest first, so "let me double-check" counts once, not as "let me double-check" and
"double-check".
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TRANSITION_KEYWORDS: tuple[str, ...] = (
    "alternatively",
    "instead",
    "another approach",
    "another way",
    "another method",
    "a different approach",
    "a different way",
    "different approach",
    "try a different",
    "let's try another",
    "let me try another",
    "let me try a different",
    "on the other hand",
    "however",
    "but what if",
    "switch to",
    "let's consider another",
    "let me consider another",
    "let's approach",
    "let me approach",
)
"""Phrases that mark a *transition* thought: abandoning the current line of attack for another one.

Our own list (the paper does not publish its keywords)."""

REFLECTION_KEYWORDS: tuple[str, ...] = (
    "wait",
    "let me check",
    "let's check",
    "let me verify",
    "let's verify",
    "let me double-check",
    "let me double check",
    "double-check",
    "double check",
    "let me re-check",
    "let me recheck",
    "recheck",
    "re-check",
    "re-examine",
    "reexamine",
    "re-evaluate",
    "reevaluate",
    "re-verify",
    "let me reconsider",
    "let's reconsider",
    "hold on",
    "that's not right",
    "that is not right",
    "that's wrong",
    "that is wrong",
    "that can't be right",
    "that doesn't make sense",
    "i made a mistake",
    "i made an error",
    "made a mistake",
    "mistake here",
    "let me see if",
    "verify this",
    "check again",
    "let me think again",
    "hmm",
)
"""Phrases that mark a *reflection* thought: the model checking, doubting or correcting itself.

Our own list (the paper does not publish its keywords)."""

BEHAVIOR_KEYWORDS: dict[str, tuple[str, ...]] = {
    "transition": TRANSITION_KEYWORDS,
    "reflection": REFLECTION_KEYWORDS,
}
"""Every behaviour counted by `count_reasoning_behaviors`, with its keyword list."""

BEHAVIORS: tuple[str, ...] = tuple(BEHAVIOR_KEYWORDS)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def _phrase_pattern(phrase: str) -> str:
    parts = [re.escape(word) for word in phrase.split()]
    body = r"\s+".join(parts)
    # \b is only meaningful next to a word character; every phrase above starts and ends with one.
    return rf"(?<![\w'-]){body}(?![\w'-])" if phrase[-1].isalnum() else rf"(?<![\w'-]){body}"


def _compile(keywords: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted({k.lower() for k in keywords}, key=len, reverse=True)
    return re.compile("|".join(_phrase_pattern(k) for k in ordered), re.IGNORECASE)


_PATTERNS: dict[str, re.Pattern[str]] = {name: _compile(words) for name, words in BEHAVIOR_KEYWORDS.items()}


def completion_text(completion: Any) -> str:
    """The text of a completion: a plain string, or a conversational completion (a list of message dicts, whose
    `content` fields are joined)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        content = completion.get("content", "")
        return content if isinstance(content, str) else str(content)
    if isinstance(completion, Sequence):
        return "\n".join(completion_text(message) for message in completion)
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def count_reasoning_behaviors(text: Any) -> dict[str, int]:
    """Count transition and reflection thoughts in one completion.

    Args:
        text: the completion, a string (or a conversational completion, a list of message dicts).

    Returns:
        `{"transition": int, "reflection": int}`: the number of keyword matches of each behaviour (see
        `TRANSITION_KEYWORDS` and `REFLECTION_KEYWORDS`). Matching is case-insensitive and on word boundaries.
    """
    text = completion_text(text).translate(_APOSTROPHES)
    return {name: sum(1 for _ in pattern.finditer(text)) for name, pattern in _PATTERNS.items()}


def mean_behavior_counts(texts: Iterable[Any]) -> dict[str, float]:
    """Mean count per completion of each behaviour, keyed by behaviour name (0.0 for no completions)."""
    totals = dict.fromkeys(BEHAVIORS, 0)
    num = 0
    for text in texts:
        counts = count_reasoning_behaviors(text)
        for name in BEHAVIORS:
            totals[name] += counts[name]
        num += 1
    return {name: (totals[name] / num if num else 0.0) for name in BEHAVIORS}


def behavior_metrics(texts: Iterable[Any]) -> dict[str, float]:
    """Mean behaviour counts per completion, as logged by the trainer every step.

    Returns:
        `{"behaviors/transition": float, "behaviors/reflection": float}` (0.0 for an empty list).
    """
    return {f"behaviors/{name}": value for name, value in mean_behavior_counts(texts).items()}


def _mean_counts_of(source: Any) -> dict[str, float]:
    """Mean per-completion behaviour counts from texts, a mapping of counts, a results.json dict or its path."""
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and "\n" in source):
        path = Path(source)
        if path.suffix in (".json", ".jsonl") or path.exists():
            if not path.is_file():
                raise FileNotFoundError(f"no such results file: {path}")
            if path.suffix == ".jsonl":
                with open(path, encoding="utf-8") as f:
                    rows = [json.loads(line) for line in f if line.strip()]
                return mean_behavior_counts(row.get("completion", "") for row in rows)
            with open(path, encoding="utf-8") as f:
                return _mean_counts_of(json.load(f))
    if isinstance(source, str):
        raise TypeError("pass a list of completions, not a single string, to compare behaviours")
    if isinstance(source, Mapping):
        if "benchmarks" in source:  # a results.json written by `prerl-trl eval`
            total = dict.fromkeys(BEHAVIORS, 0.0)
            num = 0
            for bench in source["benchmarks"].values():
                k = int(bench["num_completions"])
                for name in BEHAVIORS:
                    total[name] += bench["behaviors"][name] * k
                num += k
            if num == 0:
                raise ValueError("the results contain no completions")
            return {name: total[name] / num for name in BEHAVIORS}
        if "behaviors" in source and isinstance(source["behaviors"], Mapping):
            return _mean_counts_of(source["behaviors"])
        out = {}
        for name in BEHAVIORS:
            for key in (name, f"behaviors/{name}"):
                if key in source:
                    out[name] = float(source[key])
                    break
            else:
                raise KeyError(f"no {name!r} count in {sorted(source)}")
        return out
    return mean_behavior_counts(source)


def behavior_ratio(before: Any, after: Any) -> dict[str, float]:
    """How much each behaviour grew from `before` to `after` (e.g. a base model and an NSR-PreRL checkpoint).

    Each side is one of: a list of completions; a mapping of mean counts (`{"transition": ..., "reflection": ...}`
    or the `behaviors/...` keys of `behavior_metrics`); a results.json dict written by `prerl-trl eval` (the mean
    over all its completions); or a path to a results.json or to a generations JSONL with a `completion` field.

    Returns:
        `{"transition": after / before, "reflection": after / before}` of the mean counts per completion
        (`inf` when before is 0 and after is not, `nan` when both are 0).
    """
    b, a = _mean_counts_of(before), _mean_counts_of(after)
    out = {}
    for name in BEHAVIORS:
        if b[name] > 0:
            out[name] = a[name] / b[name]
        else:
            out[name] = float("inf") if a[name] > 0 else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m prerl_trl.behaviors BEFORE AFTER`: behaviour ratios between two results.json/JSONL files."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m prerl_trl.behaviors",
        description="Ratio of transition/reflection thoughts per completion, AFTER over BEFORE. Each file is a "
        "results.json from `prerl-trl eval` or a JSONL with a 'completion' field.",
    )
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args(argv)
    try:
        b, a = _mean_counts_of(Path(args.before)), _mean_counts_of(Path(args.after))
        ratio = behavior_ratio(b, a)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("| behaviour | before | after | ratio |\n| --- | --- | --- | --- |")
    for name in BEHAVIORS:
        print(f"| {name} | {b[name]:.3f} | {a[name]:.3f} | {format_ratio(ratio[name])} |")
    return 0


def format_ratio(ratio: float) -> str:
    """A ratio of `behavior_ratio` for a table: `2.50x`, `n/a (both 0)` or `inf (before 0)`."""
    if math.isnan(ratio):
        return "n/a (both 0)"
    if math.isinf(ratio):
        return "inf (before 0)"
    return f"{ratio:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
