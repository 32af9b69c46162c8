"""Session-bootstrapped 95% intervals: resample whole sessions, recompute, take percentiles.

Rows of one session are not independent (same shopper, same intent), so the unit resampled is
the session. A replicate is a vector of multinomial counts, one per session; every statistic is
computed from those counts and the session of each row (a row weighs its session's count), so
one set of replicates serves every metric and comparisons between rankers are paired (same
replicates for both). Means aggregate per session first, so they cost nothing even on a
million rows; AUC needs the row weights, computed a chunk of replicates at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
# A statistic is bound once to the session of each row, statistic(units), and then computes
# one value per replicate from the session counts: bound(counts (replicates, sessions)).
Bound = Callable[[F64], F64]
Statistic = Callable[[I64], Bound]

REPLICATES = 1_000
LARGE_REPLICATES = 200  # above LARGE_ROWS held-out rows, where 1,000 would take minutes
LARGE_ROWS = 200_000
BOOTSTRAP_SEED = 42
LEVEL = 0.95
CHUNK_CELLS = 250_000  # replicates x rows computed at once: stays in cache, bounds memory


@dataclass(frozen=True)
class Interval:
    """A point estimate (on the full sample) and its percentile bootstrap interval."""

    value: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return {"value": self.value, "low": self.low, "high": self.high}


NONE = Interval(None, None, None)


@dataclass(frozen=True)
class Bootstrap:
    """Replicate weights of the sessions: counts (replicates, sessions)."""

    counts: F64

    @classmethod
    def draw(
        cls, n_sessions: int, replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED
    ) -> Bootstrap:
        """Multinomial resamples of n_sessions sessions (each replicate has n_sessions draws)."""
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n_sessions, np.full(n_sessions, 1.0 / n_sessions), replicates)
        return cls(counts.astype(np.float64))

    @property
    def replicates(self) -> int:
        """Number of replicates."""
        return len(self.counts)

    def interval(self, statistic: Statistic, units: I64) -> Interval:
        """The statistic on the full sample and on every replicate; units[i] = session of row i.

        The point estimate is the statistic with every session counted once. Replicates where
        the statistic is undefined (NaN) are dropped; if most are, the interval is None.
        """
        if not len(units):
            return NONE
        bound = statistic(units)
        value = float(bound(np.ones((1, self.counts.shape[1])))[0])
        step = max(1, CHUNK_CELLS // len(units))
        values = np.concatenate(
            [bound(self.counts[start : start + step]) for start in range(0, self.replicates, step)]
        )
        values = values[np.isfinite(values)]
        if len(values) < self.replicates / 2 or not np.isfinite(value):
            return Interval(value if np.isfinite(value) else None, None, None)
        tail = (1.0 - LEVEL) / 2 * 100
        low, high = np.percentile(values, [tail, 100 - tail])
        return Interval(value, float(low), float(high))


def weighted_mean(values: npt.ArrayLike) -> Statistic:
    """The mean of per-row values, each row weighing its session's count (NaN rows ignored)."""
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    clean = np.where(finite, array, 0.0)

    def statistic(units: I64) -> Bound:
        sessions = int(units.max()) + 1 if len(units) else 0
        total = np.bincount(units, clean, minlength=sessions)
        rows = np.bincount(units, finite.astype(np.float64), minlength=sessions)

        def bound(counts: F64) -> F64:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.asarray(
                    (counts[:, :sessions] @ total) / (counts[:, :sessions] @ rows),
                    dtype=np.float64,
                )

        return bound

    return statistic


def weighted_auc(y: npt.ArrayLike, scores: npt.ArrayLike) -> Statistic:
    """ROC AUC with row weights (ties count one half), for many weight vectors at once."""
    labels = np.asarray(y, dtype=np.float64)
    values = np.asarray(scores, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    positive = labels[order]

    ends = np.r_[starts[1:], len(values)] - 1

    def statistic(units: I64) -> Bound:
        return lambda counts: _auc(counts[:, units[order]])

    def _auc(w: F64) -> F64:
        wp = w * positive
        # Per tie group: positive weight, and negative weight at or below the group.
        cum_pos = np.cumsum(wp, axis=1)[:, ends]
        cum_neg = np.cumsum(w - wp, axis=1)[:, ends]
        pos = np.diff(cum_pos, axis=1, prepend=0.0)
        neg_upto = cum_neg
        neg_here = np.diff(cum_neg, axis=1, prepend=0.0)
        total_pos, total_neg = cum_pos[:, -1], cum_neg[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (pos * (neg_upto - 0.5 * neg_here)).sum(axis=1) / (total_pos * total_neg)
        return np.asarray(auc, dtype=np.float64)

    return statistic


def weighted_log_loss(y: npt.ArrayLike, scores: npt.ArrayLike) -> Statistic:
    """Mean log loss with row weights (probabilities clipped to [1e-15, 1 - 1e-15])."""
    labels = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-15, 1 - 1e-15)
    return weighted_mean(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def ratio(numerator: Statistic, denominator: Statistic) -> Statistic:
    """The ratio of two statistics, replicate by replicate (a paired comparison)."""

    def statistic(units: I64) -> Bound:
        top, bottom = numerator(units), denominator(units)

        def bound(counts: F64) -> F64:
            with np.errstate(invalid="ignore", divide="ignore"):
                return top(counts) / bottom(counts)

        return bound

    return statistic


def difference(first: Statistic, second: Statistic) -> Statistic:
    """first - second, replicate by replicate (a paired comparison)."""

    def statistic(units: I64) -> Bound:
        a, b = first(units), second(units)
        return lambda counts: a(counts) - b(counts)

    return statistic


def replicates_for(rows: int) -> int:
    """How many replicates to draw for a held-out set of this many rows."""
    return REPLICATES if rows <= LARGE_ROWS else LARGE_REPLICATES
