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

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from training.behaviour import EXAMINATION
from training.logs import Responses, attribute, read_events, read_responses

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


@dataclass(frozen=True)
class Truth:
    """What a simulator knows about a log: per request id, P(click | examined) of every product
    (indexed by `index`, product id -> position)."""

    relevance: Mapping[str, npt.NDArray[np.float32]]
    index: Mapping[str, int]


def target_slates(responses: Responses, booster: lgb.Booster, truth: Truth | None,
                  pick: np.ndarray) -> tuple[LoggedSlates, float, float]:  # fmt: skip
    """The logged responses `pick` as LoggedSlates for the new bundle's greedy policy (its top
    K by its own score among the logged candidates), with the simulator's true CTR of that
    policy and of the logged one on the same responses."""
    k = SLOTS = len(EXAMINATION)
    exam = np.asarray(EXAMINATION)
    n = len(pick)
    logged = np.full((n, k), -1, np.int64)
    target = np.full((n, k), -2, np.int64)
    mask = np.zeros((n, k), bool)
    propensity = np.ones((n, k))
    q_logged = np.zeros((n, k))
    q_target = np.zeros((n, k))
    truth_target, truth_logged, with_truth = 0.0, 0.0, 0
    index = truth.index if truth is not None else {}
    request_ids = responses.frame["request_id"].to_numpy()
    for row, r in enumerate(pick.tolist()):
        lo, hi = responses.cand_offsets[r], responses.cand_offsets[r + 1]
        ids = responses.candidate_ids[lo:hi]
        scores = np.asarray(booster.predict(responses.features[lo:hi]), np.float64)
        s_lo, s_hi = responses.slot_offsets[r], responses.slot_offsets[r + 1]
        shown = responses.shown[s_lo:s_hi][:SLOTS]
        m = len(shown)
        best = np.argsort(-scores, kind="stable")[:m]
        logged[row, :m] = shown
        target[row, :m] = best
        mask[row, :m] = True
        propensity[row, :m] = responses.propensities[s_lo:s_hi][:SLOTS]
        q_logged[row, :m] = scores[shown] * exam[:m] / exam[:m].mean()
        q_target[row, :m] = scores[best] * exam[:m] / exam[:m].mean()
        known = truth.relevance.get(str(request_ids[r])) if truth is not None else None
        if known is not None:
            world = np.array([index[str(p)] for p in ids])
            truth_target += float((exam[:m] * known[world[best]]).sum())
            truth_logged += float((exam[:m] * known[world[shown]]).sum())
            with_truth += m
    slates = LoggedSlates(logged, target, mask, propensity, np.zeros((n, k)), q_logged, q_target,
                          np.zeros(n, np.int64))  # fmt: skip
    if not with_truth:
        return slates, float("nan"), float("nan")
    return slates, truth_target / with_truth, truth_logged / with_truth


def off_policy(logs: Path, bundle: Path, window_seconds: float, seed: int,
               truth: Truth | None = None) -> dict[str, Any]:  # fmt: skip
    """IPS / SNIPS / DR of `bundle` (its greedy top K) on the log, beside the true value of
    that policy when the simulator that made the log says it (NaN otherwise)."""
    responses = read_responses(logs)
    slots = attribute(responses, read_events(logs), window_seconds)
    usable = np.flatnonzero(~responses.frame["cold_start"].to_numpy(bool))
    booster = lgb.Booster(model_file=str(bundle / "model.txt"))
    slates, true_value, logged_truth = target_slates(responses, booster, truth, usable)
    clicks = np.zeros_like(slates.clicks)
    per = np.diff(responses.slot_offsets)
    clicked = slots.clicked.astype(np.float64)
    starts = responses.slot_offsets[:-1]
    for row, r in enumerate(usable.tolist()):
        m = min(per[r], clicks.shape[1])
        clicks[row, :m] = clicked[starts[r] : starts[r] + m]
    sessions = responses.frame["session_id"].to_numpy()[usable]
    cluster = np.unique(sessions, return_inverse=True)[1].astype(np.int64)
    slates = LoggedSlates(slates.logged, slates.target, slates.mask, slates.propensity, clicks,
                          slates.q_logged, slates.q_target, cluster)  # fmt: skip
    found = estimate(slates, seed=seed)
    return {
        "estimates": {name: e.to_dict() for name, e in found.items()},
        "true_ctr_of_target": true_value,
        "true_ctr_of_logged": logged_truth,
        "logged_ctr": float(clicks[slates.mask].mean()),
        "effective_slots": effective_sample_size(slates),
        "slots": int(slates.mask.sum()),
        "covered": {
            name: OpeEstimate(name, **e.to_dict()).covers(true_value) for name, e in found.items()
        },
    }
