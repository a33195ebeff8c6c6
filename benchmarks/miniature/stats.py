"""Paired statistics for the comparisons: a method against GRPO, seed by seed (same base, data order and evaluation
draw), with a Student-t 95% interval on the mean difference. Sample standard deviations (ddof=1) throughout."""

from __future__ import annotations

import math
import statistics


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer `df` degrees of freedom, in closed form (Abramowitz & Stegun
    26.7.3 and 26.7.4: finite series in theta = atan(t / sqrt(df)))."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        term, total = math.cos(theta), 0.0
        if df > 1:
            total = term
            for j in range(3, df - 1, 2):  # cos^j terms with coefficients 2/3, (2*4)/(3*5), ...
                term *= c2 * (j - 1) / j
                total += term
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term, total = 1.0, 1.0
    for j in range(2, df - 1, 2):  # cos^j terms with coefficients 1/2, (1*3)/(2*4), ...
        term *= c2 * (j - 1) / j
        total += term
    return math.sin(theta) * total


def t_critical(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t critical value: P(|T| <= t) = level, by bisection on the closed-form CDF."""
    if df < 1 or not 0 < level < 1:
        raise ValueError(f"df={df!r} must be >= 1 and level={level!r} in (0, 1)")
    lo, hi = 0.0, 1.0
    while _t_two_sided_mass(hi, df) < level:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided_mass(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values: list[float], level: float = 0.95) -> dict:
    """Mean, sample std (ddof=1), n and the t interval `mean ± half_width` (None with fewer than 2 values)."""
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else None
    half = t_critical(n - 1, level) * sd / math.sqrt(n) if sd is not None else None
    return {"n": n, "mean": mean, "sd": sd, "half_width": half, "low": None if half is None else mean - half,
            "high": None if half is None else mean + half, "level": level, "values": values}


def _run_order(run_id: str) -> tuple:
    """Seeds ("3") and pooled runs ("base/seed", "1/3") in numeric order; other names after, by name."""
    parts = run_id.split("/")
    return (0, *map(int, parts)) if all(p.isdigit() for p in parts) else (1, run_id)


def paired_differences(method_by_seed: dict[str, float], control_by_seed: dict[str, float]) -> dict | None:
    """method - control on the seeds both have, with `mean_interval`; None when no seed is shared."""
    seeds = sorted(set(method_by_seed) & set(control_by_seed), key=_run_order)
    if not seeds:
        return None
    out = mean_interval([method_by_seed[s] - control_by_seed[s] for s in seeds])
    out["seeds"] = seeds
    return out


def equal_updates(method: dict[str, dict[int, float]], control: dict[str, dict[int, float]],
                  shift: int) -> dict[str, dict]:
    """Method at step t against the control at step t - `shift`, paired by seed: for DSRL, whose first `shift` updates
    are the warm-up, this compares the two after the same number of GRPO updates. Inputs are {seed: {step: value}};
    the output is {str(t): paired_differences(...) + "control_step"} for every t where both have points."""
    steps = sorted({t for curve in method.values() for t in curve if t - shift >= 0})
    out = {}
    for t in steps:
        at_t = {s: c[t] for s, c in method.items() if t in c}
        before = {s: c[t - shift] for s, c in control.items() if t - shift in c}
        paired = paired_differences(at_t, before)
        if paired is not None:
            out[str(t)] = {**paired, "control_step": t - shift}
    return out


def first_crossing(steps: list[int], values: list[float], level: float) -> float | None:
    """The first step at which a curve reaches `level`, linearly interpolated between the last evaluated step below
    it and the first one at or above it; None when the curve never reaches it."""
    for i, (t, v) in enumerate(zip(steps, values, strict=True)):
        if v >= level:
            if i == 0:
                return float(t)
            t0, v0 = steps[i - 1], values[i - 1]
            return t0 + (t - t0) * (level - v0) / (v - v0)
    return None


def steps_to_gain(steps: list[int], values: list[float], base: float, final_gain: float,
                  fractions: tuple[float, ...] = (0.5, 0.9)) -> dict[str, dict]:
    """For each fraction f: the level base + f * final_gain, the first evaluated step at or above it, and the
    interpolated crossing (`first_crossing`). Nothing is reached when the gain is not positive."""
    out = {}
    for f in fractions:
        level = base + f * final_gain
        reached = final_gain > 0
        evaluated = next((t for t, v in zip(steps, values, strict=True) if v >= level), None) if reached else None
        out[str(f)] = {"level": level, "first_evaluated_step": evaluated,
                       "interpolated_step": first_crossing(steps, values, level) if reached else None}
    return out


def bootstrap_paired(method: dict[str, list[float]], control: dict[str, list[float]], strata: dict[str, str],
                     scale: float = 1.0, num_resamples: int = 20_000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap of the mean paired difference over runs *and* problems.

    `method` and `control` map a run id (a seed, paired: same id, same base and data order) to per-problem values on
    the same problems (correct counts; `scale` divides them, e.g. by k for avg@k). One replicate draws the run ids with
    replacement within each stratum (the base: each base keeps its number of runs) and, independently, the problems
    with replacement (one draw shared by every run and both arms, since they are evaluated on the same problems); its
    statistic is the mean over the drawn runs and problems of (method - control) / scale."""
    import numpy as np

    ids = sorted(set(method) & set(control), key=_run_order)
    diff = np.array([[(m - c) / scale for m, c in zip(method[i], control[i], strict=True)] for i in ids])
    rng = np.random.default_rng(seed)
    num_problems = diff.shape[1]
    run_weights = np.zeros((num_resamples, len(ids)))
    for stratum in sorted({strata[i] for i in ids}):
        members = [j for j, i in enumerate(ids) if strata[i] == stratum]
        drawn = rng.choice(members, size=(num_resamples, len(members)))
        np.add.at(run_weights, (np.arange(num_resamples)[:, None], drawn), 1.0)
    problem_weights = rng.multinomial(num_problems, np.full(num_problems, 1 / num_problems), size=num_resamples)
    stats = np.einsum("bp,pq,bq->b", run_weights, diff, problem_weights) / (len(ids) * num_problems)
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "level": level,
            "sd": float(stats.std(ddof=1)), "num_resamples": num_resamples, "runs": ids, "num_problems": num_problems}
