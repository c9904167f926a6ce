"""The statistics a planner's answer rests on, pure (no runs, no processes):
Student's t quantile, the paired-t and the two-sample (Welch) interval of a
difference, the Wilson-judged verdict on a share, and the sequential rule
that says when replications are precise enough.

Every function takes plain lists of floats and returns plain values, so the
tests check each against a closed form or a textbook figure.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from smsbatch.core.stats import wilson

Z975 = 1.959963984540054
# Student's t, 97.5% quantile, by degrees of freedom (1..30).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
MIN_AUTO = 10  # --replications auto: never fewer than this many before judging the precision


def t975(df: float) -> float:
    """Student's t 97.5% quantile: the table to 30 degrees of freedom, then the
    Cornish-Fisher expansion about the normal (within 1e-4 of the exact value there)."""
    if df < 1:
        return math.inf
    whole = int(df)
    if whole == df and whole <= len(_T975):
        return _T975[whole - 1]
    z = Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def half_width(values: list[float]) -> float:
    """The 95% Student's t interval's half-width of the mean of `values` (inf below 2 values)."""
    n = len(values)
    if n < 2:
        return math.inf
    return t975(n - 1) * statistics.stdev(values) / math.sqrt(n)


@dataclass(frozen=True)
class Difference:
    """b - a, replication by replication (paired) or mean against mean (independent)."""

    mean: float
    low: float
    high: float
    n: int
    paired: bool
    correlation: float | None  # of a and b across the pairs (None: independent, or a constant)

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_difference(a: list[float], b: list[float]) -> Difference:
    """The paired-t 95% interval of mean(b - a): a[i] and b[i] share replication i's seeds."""
    if len(a) != len(b) or not a:
        raise ValueError("a paired difference needs the same number of values on each side, at least one")
    differences = [y - x for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(differences)
    half = half_width(differences) if len(differences) > 1 else math.inf
    if half == 0.0 or math.isnan(half):  # every pair differs by the same amount (0 for identical configs)
        half = 0.0
    return Difference(mean, mean - half, mean + half, len(a), True, correlation(a, b))


def independent_difference(a: list[float], b: list[float]) -> Difference:
    """Welch's 95% interval of mean(b) - mean(a) for two independent samples."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("an independent difference needs at least two values on each side")
    mean = statistics.fmean(b) - statistics.fmean(a)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Difference(mean, mean, mean, min(len(a), len(b)), False, None)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t975(df) * se
    return Difference(mean, mean - half, mean + half, min(len(a), len(b)), False, None)


def correlation(a: list[float], b: list[float]) -> float | None:
    """Pearson's r of a and b; None when either is constant (or fewer than two)."""
    if len(a) < 2:
        return None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    if saa == 0.0 or sbb == 0.0:
        return None
    return sab / math.sqrt(saa * sbb)


FEASIBLE, INFEASIBLE, INCONCLUSIVE = "feasible", "infeasible", "inconclusive"


def feasibility(met: int, n: int, probability: float) -> str | None:
    """A candidate's verdict from `met` of `n` replications meeting the deadline:
    feasible when the Wilson 95% lower bound is at least `probability`,
    infeasible when the upper bound is below it, else None (not decided yet)."""
    low, high = wilson(met, n)
    if n and low >= probability:
        return FEASIBLE
    if n and high < probability:
        return INFEASIBLE
    return None


def fewest_to_show(probability: float) -> int:
    """The fewest replications that can show `probability` at all: n of n with its
    Wilson lower bound at least `probability` (74 for 0.95)."""
    n = 1
    while wilson(n, n)[0] < probability:
        n = n * 2 if wilson(n * 2, n * 2)[0] < probability else n + 1
    return n


def precise(values: list[float], precision: float, minimum: int = MIN_AUTO) -> bool:
    """Sequential sampling: are these replications' figures enough? At least
    `minimum` of them, and the 95% half-width within `precision` of |mean|."""
    if len(values) < minimum:
        return False
    return half_width(values) <= precision * abs(statistics.fmean(values))
