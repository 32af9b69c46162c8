"""The experiment log's file layout and the A/B statistics the server and training share."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

# One file per interval and kind, written under a temporary dot-name and renamed when complete:
# readers take only names matching LOG_FILE_PATTERN, so they never see a half-written file.
LOG_KINDS = ("impressions", "events")
LOG_FILE_PATTERN = re.compile(r"^(impressions|events)-(\d{8}T\d{6}Z)-(\d+)-([0-9a-f]+)\.parquet$")
Z95 = 1.959963984540054


def log_file_name(kind: str, stamp: str, pid: int, sequence: int) -> str:
    """The complete file's name: kind, UTC start of the interval, writer pid, sequence."""
    return f"{kind}-{stamp}-{pid}-{sequence:x}.parquet"


def log_kind(name: str) -> str | None:
    """The kind of a complete log file's name, or None for anything else (temporary files)."""
    match = LOG_FILE_PATTERN.match(name)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval."""

    value: float
    low: float
    high: float


def wilson(successes: int, trials: int, z: float = Z95) -> Estimate:
    """The Wilson score interval of a binomial proportion (NaN for no trials)."""
    if trials <= 0:
        return Estimate(math.nan, math.nan, math.nan)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


@dataclass(frozen=True)
class Difference:
    """B - A with its 95% interval and the two-sided p-value of "no difference"."""

    value: float
    low: float
    high: float
    p_value: float


def difference(mean_a: float, se_a: float, mean_b: float, se_b: float) -> Difference:
    """The difference of two independent estimates (normal approximation)."""
    value = mean_b - mean_a
    se = math.hypot(se_a, se_b)
    if not se > 0:
        return Difference(value, math.nan, math.nan, math.nan)
    return Difference(value, value - Z95 * se, value + Z95 * se, normal_two_sided_p(value / se))


def binomial_se(successes: int, trials: int) -> float:
    """Standard error of a proportion (NaN for no trials)."""
    if trials <= 0:
        return math.nan
    p = successes / trials
    return math.sqrt(p * (1 - p) / trials)


def chi_square_survival(statistic: float, dof: int) -> float:
    """P(X >= statistic) for a chi-square X with `dof` degrees of freedom (regularised upper
    incomplete gamma Q(dof / 2, statistic / 2), by series or continued fraction)."""
    if statistic <= 0:
        return 1.0
    a, x = dof / 2.0, statistic / 2.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # series for the lower function P
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-15:
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    # Lentz's continued fraction for Q
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def sample_ratio_p_value(counts: Sequence[int], shares: Sequence[float]) -> float:
    """The p-value of a sample-ratio-mismatch check: chi-square of the observed units per
    variant against the configured shares (a tiny p-value means the split is broken)."""
    total = sum(counts)
    weight = sum(shares)
    if total <= 0 or len(counts) < 2 or weight <= 0:
        return math.nan
    statistic = 0.0
    for observed, share in zip(counts, shares, strict=True):
        expected = total * share / weight
        if expected > 0:
            statistic += (observed - expected) ** 2 / expected
    return chi_square_survival(statistic, len(counts) - 1)
