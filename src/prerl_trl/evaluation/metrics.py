"""avg@n, the unbiased pass@k, and their intervals: pure functions of per-problem correct counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: 1 - C(n-c, k) / C(n, k).

    The probability that at least one of k samples drawn without replacement from the n generated ones is correct,
    given that c of the n are correct. Computed in the numerically stable product form
    1 - prod_{i=n-c+1}^{n} (1 - k / i) (Chen et al. 2021), so large n does not overflow.

    Raises:
        ValueError: n < 1, c outside [0, n], or k outside [1, n].
    """
    n, c, k = _check_int("n", n), _check_int("c", c), _check_int("k", k)
    if n < 1:
        raise ValueError(f"pass@k needs n >= 1 samples, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"the number of correct samples c must be in [0, n={n}], got c={c}")
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}")
    if k > n:
        raise ValueError(f"pass@k needs k <= n, got k={k} > n={n}: generate at least k samples per problem")
    if n - c < k:
        return 1.0
    if k == 1:  # exactly c / n, so pass@1 and avg@n agree to the last digit
        return c / n
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_n(correct_counts: Sequence[int], n: int) -> float:
    """avg@n: the mean accuracy over n samples per problem, i.e. mean_p c_p / n."""
    n = _check_int("n", n)
    if n < 1:
        raise ValueError(f"avg@n needs n >= 1, got n={n}")
    if not correct_counts:
        raise ValueError("avg@n needs at least one problem")
    return sum(correct_counts) / (n * len(correct_counts))


def avg_at_n_ci(correct_counts: Sequence[int], n: int, z: float = 1.96) -> tuple[float, float, float]:
    """avg@n and its confidence interval, (avg, low, high): mean +- z standard errors of the per-problem accuracies
    c_p / n (problems taken as a sample, so both the choice of problems and the sampling of answers count). z = 1.96
    is a 95% interval under the normal approximation; with few problems it is optimistic."""
    avg = avg_at_n(correct_counts, n)
    half = z * _standard_error([c / n for c in correct_counts])
    return avg, avg - half, avg + half


def paired_difference_ci(
    before: Sequence[int], after: Sequence[int], n: int, z: float = 1.96
) -> tuple[float, float, float]:
    """avg@n of `after` minus avg@n of `before` on the same problems, with its confidence interval from the
    per-problem differences (a paired interval: much narrower than two separate ones when problems differ in
    difficulty)."""
    if len(before) != len(after):
        raise ValueError(f"paired counts need the same problems, got {len(before)} and {len(after)}")
    diffs = [(a - b) / n for b, a in zip(before, after, strict=True)]
    mean = avg_at_n(after, n) - avg_at_n(before, n)
    half = z * _standard_error(diffs)
    return mean, mean - half, mean + half


def _standard_error(values: Sequence[float]) -> float:
    if len(values) < 2:
        raise ValueError(f"a confidence interval needs at least two problems, got {len(values)}")
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return (variance / len(values)) ** 0.5


def pass_at_k_ks(n: int) -> list[int]:
    """The k at which pass@k is reported: 1, 2, 4, ... up to n, and n itself."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return ks


def mean_pass_at_k(correct_counts: Sequence[int], n: int, k: int) -> float:
    """pass@k of a benchmark: the per-problem unbiased estimator averaged over problems."""
    if not correct_counts:
        raise ValueError("pass@k needs at least one problem")
    return sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts)
