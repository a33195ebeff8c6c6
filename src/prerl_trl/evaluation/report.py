"""Scoring completions and reporting: per-benchmark summaries, their mean, the markdown table and the pass@k plot."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..behaviors import BEHAVIORS, count_reasoning_behaviors
from .defaults import VERIFIERS, EvaluationError
from .metrics import avg_at_n, mean_pass_at_k, pass_at_k_ks


def score_completions(completions: list[str], answer: str, verifier: str = "math_accuracy") -> list[bool | None]:
    """Check each completion's final answer against `answer` with the reward named `verifier`
    (`math_accuracy`: math-verify, with its time limit; `math_string_match`: the Hendrycks-MATH string match).

    None marks a gold answer the verifier cannot parse."""
    from .. import rewards

    if verifier not in VERIFIERS:
        raise EvaluationError(f"verifier={verifier!r} is unknown; use one of {', '.join(VERIFIERS)}")
    scores = rewards.REWARD_FUNCTIONS[verifier](completions, answer=[answer] * len(completions))
    return [None if s is None else bool(s > 0.5) for s in scores]


def score_benchmark(
    bench: Any, samples: Sequence[Sequence[dict[str, Any]]], verifier: str = "math_accuracy", *,
    code_limits: Any = None, workers: int | None = None, progress: bool = True,
) -> tuple[list[list[bool | None]], dict[str, Any]]:
    """Score the cached samples of a `Benchmark` by its kind: math (the verifier), choice (the boxed letter) or code
    (the tests, run in the sandbox). Returns the scores per problem and, for code, an execution summary (outcomes
    by kind, the isolation the sandbox set up, the limits)."""
    completions = [[r["completion"] for r in recs] for recs in samples]
    if bench.kind == "choice":
        from .choice import score_choices

        return [list(score_choices(cs, answer, p["letters"]))
                for cs, answer, p in zip(completions, bench.answers, bench.problems, strict=True)], {}
    if bench.kind == "code":
        from dataclasses import asdict

        from .humaneval import score_programs
        from .sandbox import SandboxLimits

        limits = code_limits or SandboxLimits()
        runs = score_programs(bench.problems, completions, limits, workers=workers, progress=progress)
        outcomes: dict[str, int] = {}
        for result in (r for rs in runs for r in rs):
            kind = "passed" if result.passed else ("timed out" if result.outcome.startswith("timed out") else
                                                   result.outcome.split(":")[1].strip() or "failed")
            outcomes[kind] = outcomes.get(kind, 0) + 1
        isolation = sorted({r.isolation for rs in runs for r in rs})
        return [[r.passed for r in rs] for rs in runs], {"execution": {"outcomes": outcomes, "isolation": isolation,
                                                                        "limits": asdict(limits)}}
    return [score_completions(cs, answer, verifier) for cs, answer in zip(completions, bench.answers, strict=True)], {}


def summarize_benchmark(
    name: str, answers: Sequence[str], samples: Sequence[Sequence[dict[str, Any]]], n: int,
    verifier: str = "math_accuracy", scores: Sequence[Sequence[bool | None]] | None = None,
) -> dict[str, Any]:
    """Score the n samples of each problem (or take their `scores`) and compute avg@n, pass@k, mean length and
    behaviour counts."""
    problems, counts, lengths, truncated = [], [], [], 0
    behaviors = dict.fromkeys(BEHAVIORS, 0)
    unparsable = 0
    for index, (answer, recs) in enumerate(zip(answers, samples, strict=True)):
        scores_here = (list(scores[index]) if scores is not None
                       else score_completions([r["completion"] for r in recs], answer, verifier))
        if any(s is None for s in scores_here):
            unparsable += 1
        correct = sum(1 for s in scores_here if s)
        counts.append(correct)
        problems.append({"index": index, "answer": answer, "correct": correct, "n": len(recs),
                         "gold_unparsable": any(s is None for s in scores_here)})
        for r in recs:
            lengths.append(int(r["num_tokens"]))
            truncated += r.get("finish_reason") == "length"
            for key, value in count_reasoning_behaviors(r["completion"]).items():
                behaviors[key] += value
    if unparsable:
        warnings.warn(f"{name}: the verifier could not parse the gold answer of {unparsable} problem(s); "
                      "they count as wrong", stacklevel=2)
    total = len(lengths)
    return {
        "num_problems": len(counts),
        "n": n,
        "num_completions": total,
        "avg_at_n": avg_at_n(counts, n),
        "pass_at_k": {str(k): mean_pass_at_k(counts, n, k) for k in pass_at_k_ks(n)},
        "mean_response_tokens": sum(lengths) / total,
        "truncated_frac": truncated / total,
        "behaviors": {key: value / total for key, value in behaviors.items()},
        "problems": problems,
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table, accuracies in percent."""
    n = results["settings"]["n"]
    ks = pass_at_k_ks(n)
    header = ["benchmark", "problems", f"avg@{n}", *(f"pass@{k}" for k in ks), "mean tokens", *BEHAVIORS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    rows = list(results["benchmarks"].items())
    if len(rows) > 1:
        rows.append(("mean", results["mean"]))
    for name, b in rows:
        cells = [name, str(b["num_problems"]), f"{100 * b['avg_at_n']:.2f}%"]
        cells += [f"{100 * b['pass_at_k'][str(k)]:.2f}%" for k in ks]
        cells += [f"{b['mean_response_tokens']:.1f}", *(f"{b['behaviors'][key]:.2f}" for key in BEHAVIORS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pass_at_k(results: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Save a pass@k curve per benchmark (log2 x axis, percent y axis). Returns None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no pass@k plot (pip install matplotlib)", stacklevel=2)
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, b in results["benchmarks"].items():
        ks = sorted(int(k) for k in b["pass_at_k"])
        ax.plot(ks, [100 * b["pass_at_k"][str(k)] for k in ks], marker="o", label=name)
    ks = pass_at_k_ks(results["settings"]["n"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"pass@k: {Path(str(results['settings']['model'])).name}, T={results['settings']['temperature']}")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def mean_over_benchmarks(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over benchmarks of the accuracies (the paper's "avg@32 over AIME24, AIME25 and AMC23");
    lengths and behaviour counts are per completion over all benchmarks."""
    bs = list(benchmarks.values())
    total = sum(b["num_completions"] for b in bs)
    return {
        "num_problems": sum(b["num_problems"] for b in bs),
        "num_completions": total,
        "avg_at_n": sum(b["avg_at_n"] for b in bs) / len(bs),
        "pass_at_k": {k: sum(b["pass_at_k"][k] for b in bs) / len(bs) for k in bs[0]["pass_at_k"]},
        "mean_response_tokens": sum(b["mean_response_tokens"] * b["num_completions"] for b in bs) / total,
        "truncated_frac": sum(b["truncated_frac"] * b["num_completions"] for b in bs) / total,
        "behaviors": {key: sum(b["behaviors"][key] * b["num_completions"] for b in bs) / total for key in BEHAVIORS},
    }
