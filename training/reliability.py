"""Calibration: reliability bins, ECE and its noise floor, and a Platt step folded into the trees.

A model is calibrated when, of the rows it gives about 0.7, about 70% are clicked. ECE (expected
calibration error) is the row-weighted mean gap |observed - predicted| over equal-width bins.
On a few thousand rows a perfectly calibrated model still shows an ECE of one or two points from
sampling alone, so the report prints that noise floor beside it.

Platt scaling maps the raw score (the log-odds the trees sum to) through a * raw + b. Because
the map is affine in the raw score it can be folded into the model itself (every leaf times a,
b added to the first tree's leaves): the calibrated model.txt is then what every backend
compiles and checks parity against, so the served probability is exactly the calibrated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

BINS = 10
NOISE_DRAWS = 200
NOISE_SEED = 5
# Platt is applied only when it fits the validation rows significantly better than the model
# as it is: a likelihood-ratio test of (a, b) against (1, 0), chi-squared with 2 degrees of
# freedom, at this level.
SIGNIFICANCE = 0.05
NEWTON_STEPS = 50


def reliability_bins(
    y: npt.ArrayLike, scores: npt.ArrayLike, bins: int = BINS
) -> list[dict[str, Any]]:
    """Per equal-width bin of predicted probability: rows, mean predicted, observed click rate."""
    labels = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    rows = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, p, minlength=bins)
    observed = np.bincount(index, labels, minlength=bins)
    out = []
    for b in range(bins):
        n = int(rows[b])
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "rows": n,
                "predicted": predicted[b] / n if n else None,
                "observed": observed[b] / n if n else None,
            }
        )
    return out


def ece(y: npt.ArrayLike, scores: npt.ArrayLike, bins: int = BINS) -> float:
    """Expected calibration error over equal-width bins."""
    table = reliability_bins(y, scores, bins)
    total = sum(b["rows"] for b in table)
    return float(
        sum(b["rows"] * abs(b["observed"] - b["predicted"]) for b in table if b["rows"]) / total
    )


def ece_noise_floor(scores: npt.ArrayLike, bins: int = BINS) -> tuple[float, float]:
    """(median, 95th percentile) ECE of a PERFECTLY calibrated model with these scores.

    Labels are drawn as Bernoulli(score): whatever ECE remains is sampling noise.
    """
    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    rng = np.random.default_rng(NOISE_SEED)
    draws = [ece(rng.random(len(p)) < p, p, bins) for _ in range(NOISE_DRAWS)]
    median, high = np.percentile(draws, [50, 95])
    return float(median), float(high)


@dataclass(frozen=True)
class Platt:
    """p = sigmoid(a * raw + b), raw = the model's log-odds."""

    a: float
    b: float

    @classmethod
    def fit(cls, raw: npt.ArrayLike, y: npt.ArrayLike) -> Platt:
        """Maximum likelihood (a, b) on held-aside rows (never the evaluation rows)."""
        z = np.asarray(raw, dtype=np.float64)
        labels = np.asarray(y, dtype=np.float64)
        design = np.column_stack([z, np.ones_like(z)])
        theta = np.array([1.0, 0.0])  # start from "no calibration"
        for _ in range(NEWTON_STEPS):  # logistic regression on one feature, by Newton (IRLS)
            p = 1.0 / (1.0 + np.exp(-(design @ theta)))
            gradient = design.T @ (p - labels)
            hessian = design.T @ (design * (p * (1.0 - p))[:, None])
            step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
            theta -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(float(theta[0]), float(theta[1]))

    def p_value(self, raw: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """Likelihood-ratio test of this fit against no calibration on (raw, y)."""
        labels = np.asarray(y, dtype=np.float64)
        before = 1.0 / (1.0 + np.exp(-np.asarray(raw, dtype=np.float64)))
        gain = _log_loss(labels, before) - _log_loss(labels, self.apply(raw))
        statistic = max(2.0 * len(labels) * gain, 0.0)
        return float(np.exp(-statistic / 2.0))  # chi-squared survival with 2 degrees of freedom

    def apply(self, raw: npt.ArrayLike) -> F64:
        """Calibrated probabilities of raw scores."""
        return np.asarray(
            1.0 / (1.0 + np.exp(-(self.a * np.asarray(raw, dtype=np.float64) + self.b))),
            dtype=np.float64,
        )

    def fold_into(self, booster: lgb.Booster) -> lgb.Booster:
        """A booster whose own predictions are sigmoid(a * raw + b): leaves scaled, b in tree 0."""
        out, tree = [], -1
        for line in booster.model_to_string().splitlines():
            key, _, rest = line.partition("=")
            if key == "tree_sizes":  # byte offsets of the trees, no longer true once rewritten
                continue
            if key == "Tree":
                tree = int(rest)
            if key not in ("leaf_value", "internal_value"):
                out.append(line)
                continue
            values = np.array(rest.split(), dtype=np.float64) * self.a
            if tree == 0:
                values = values + self.b
            out.append(f"{key}=" + " ".join(repr(float(v)) for v in values))
        return lgb.Booster(model_str="\n".join(out) + "\n")

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's record of the step."""
        return {"method": "platt", "a": self.a, "b": self.b}


def _log_loss(y: F64, p: F64) -> float:
    q = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())
