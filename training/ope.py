"""Off-policy evaluation of a new bundle on logged slates: IPS, SNIPS and DR with bootstrap CIs.

The value estimated is the target policy's click rate per shown slot. Under a position-based
click model (a click depends on the product, the context and the slot only) the item-position
estimators are unbiased when the logging policy gave every (product, slot) the target uses a
nonzero marginal propensity, which is exactly what the server's slate-level epsilon-greedy logs:

  IPS   = mean over responses of (1/K) sum_j w_j r_j,  w_j = pi_e(a_j, j) / pi_b(a_j, j)
  SNIPS = sum w r / sum w (over every slot)
  DR    = mean of (1/K) sum_j [q(x, e_j, j) + w_j (r_j - q(x, a_j, j))]

with a_j the logged product in slot j, e_j the target's, r_j the click, and q a reward model.
The target here is deterministic (pi_e in {0, 1}): the new bundle's top K by its own score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20260101
ESTIMATORS = ("IPS", "SNIPS", "DR")


@dataclass(frozen=True)
class LoggedSlates:
    """n responses of up to K slots (padding: product -1, mask False).

    logged / target: products in each slot under the logging and the target policy;
    propensity: the logging policy's marginal probability of the logged product in its slot;
    clicks: 0/1; q_logged / q_target: the reward model's click probability of the logged and
    of the target's product in each slot; cluster: the unit resampled (a session).
    """

    logged: I64
    target: I64
    mask: npt.NDArray[np.bool_]
    propensity: F64
    clicks: F64
    q_logged: F64
    q_target: F64
    cluster: I64


@dataclass(frozen=True)
class OpeEstimate:
    """One estimator's value with its bootstrap 95% interval."""

    name: str
    value: float
    low: float
    high: float

    def covers(self, truth: float) -> bool:
        """True when the interval holds `truth`."""
        return self.low <= truth <= self.high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"value": self.value, "low": self.low, "high": self.high}


def _parts(s: LoggedSlates) -> tuple[F64, F64, F64, F64, F64]:
    """Per response: IPS term, sum of w r, sum of w, DR term, slots."""
    slots = s.mask.sum(axis=1).astype(np.float64)
    match = (s.logged == s.target) & s.mask
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(match, 1.0 / s.propensity, 0.0)
    wr = (w * s.clicks).sum(axis=1)
    dm = np.where(s.mask, s.q_target, 0.0).sum(axis=1)
    correction = np.where(s.mask, w * (s.clicks - s.q_logged), 0.0).sum(axis=1)
    per = np.maximum(slots, 1.0)
    return wr / per, wr, w.sum(axis=1), (dm + correction) / per, slots


def estimate(
    s: LoggedSlates, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, OpeEstimate]:
    """IPS, SNIPS and DR with percentile intervals from a cluster (session) bootstrap."""
    ips, wr, w, dr, slots = _parts(s)
    clusters, index = np.unique(s.cluster, return_inverse=True)
    rng = np.random.default_rng(seed)
    # Each resample draws clusters with replacement: a weight per cluster, applied to its rows.
    counts = rng.multinomial(len(clusters), np.full(len(clusters), 1 / len(clusters)), resamples)
    weights = counts[:, index].astype(np.float64)  # (resamples, responses)

    def point_and_draws(numerator: F64, denominator: F64) -> tuple[float, F64]:
        value = float(numerator.sum() / denominator.sum()) if denominator.sum() else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = (weights @ numerator) / (weights @ denominator)
        return value, draws

    ones = np.ones(len(ips))
    out = {}
    for name, numerator, denominator in (("IPS", ips, ones), ("SNIPS", wr, w), ("DR", dr, ones)):
        value, draws = point_and_draws(numerator, denominator)
        low, high = np.nanpercentile(draws, [2.5, 97.5]) if np.isfinite(draws).any() else (
            np.nan, np.nan)  # fmt: skip
        out[name] = OpeEstimate(name, value, float(low), float(high))
    # SNIPS normalises per slot; IPS/DR average per response: weight them the same way (per
    # slot) when slates differ in length, so all three estimate clicks per shown slot.
    if np.any(slots != slots.max()):
        for name, per_response in (("IPS", ips), ("DR", dr)):
            value, draws = point_and_draws(per_response * slots, slots)
            low, high = np.nanpercentile(draws, [2.5, 97.5])
            out[name] = OpeEstimate(name, value, float(low), float(high))
    return out


def effective_sample_size(s: LoggedSlates) -> float:
    """Kish's effective number of matched slots, (sum w)^2 / sum w^2: how much of the log
    the IPS-type estimates really rest on."""
    match = (s.logged == s.target) & s.mask
    with np.errstate(divide="ignore"):
        w = np.where(match, 1.0 / s.propensity, 0.0)
    total = float((w * w).sum())
    return float(w.sum() ** 2 / total) if total > 0 else 0.0
