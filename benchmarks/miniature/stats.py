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


def paired_differences(method_by_seed: dict[str, float], control_by_seed: dict[str, float]) -> dict | None:
    """method - control on the seeds both have, with `mean_interval`; None when no seed is shared."""
    seeds = sorted(set(method_by_seed) & set(control_by_seed), key=int)
    if not seeds:
        return None
    out = mean_interval([method_by_seed[s] - control_by_seed[s] for s in seeds])
    out["seeds"] = seeds
    return out
