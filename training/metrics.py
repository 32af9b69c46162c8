"""Evaluation: classification metrics, thresholds, ranking quality, segments, projection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from training.settings import DEFAULT_THRESHOLD, BusinessAssumptions

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
TOP_K = 3
NOT_APPLICABLE = "not applicable"


def auc_or_none(y: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """ROC AUC, or None when only one class is present."""
    labels = np.asarray(y)
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def threshold_table(
    y: npt.ArrayLike, scores: npt.ArrayLike, thresholds: Sequence[float] = THRESHOLDS
) -> list[dict[str, Any]]:
    """For each threshold: rows shown (score >= t), their clicks and click rate (None if none)."""
    labels = np.asarray(y)
    values = np.asarray(scores)
    table = []
    for t in thresholds:
        shown = values >= t
        n = int(shown.sum())
        clicks = int(labels[shown].sum())
        table.append(
            {
                "threshold": t,
                "shown": n,
                "share_shown": round(n / max(len(labels), 1), 6),
                "clicks": clicks,
                "ctr": clicks / n if n else None,
            }
        )
    return table


def classification_metrics(
    y: npt.ArrayLike, scores: npt.ArrayLike, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, Any]:
    """auc, accuracy (at 0.5), log loss, baseline_ctr, threshold_table, CTR and lift at threshold.

    lift_at_threshold = ctr_at_threshold / baseline_ctr - 1 (the notebook's "+62.7%").
    """
    labels = np.asarray(y)
    values = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    baseline = float(labels.mean())
    table = threshold_table(labels, values, sorted({*THRESHOLDS, threshold}))
    at = next(row for row in table if row["threshold"] == threshold)
    ctr = at["ctr"]
    return {
        "auc": auc_or_none(labels, values),
        "accuracy": float(accuracy_score(labels, values >= 0.5)),
        "log_loss": float(log_loss(labels, values, labels=[0, 1])),
        "baseline_ctr": baseline,
        "threshold_table": table,
        "threshold": threshold,
        "shown_at_threshold": at["shown"],
        "ctr_at_threshold": ctr,
        "lift_at_threshold": (ctr / baseline - 1.0) if ctr is not None and baseline else None,
    }


def ranking_metrics(
    groups: npt.ArrayLike, y: npt.ArrayLike, scores: npt.ArrayLike, k: int = TOP_K
) -> dict[str, Any]:
    """Hit rate @k and NDCG @k over the groups (page views) with at least one click.

    Within a group, candidates are ranked by score, ties kept in their original order.
    hit = a clicked candidate is in the top k; NDCG = DCG@k / ideal DCG@k with gain 1 per click
    and discount 1 / log2(rank + 1).
    """
    frame = pd.DataFrame(
        {"group": np.asarray(groups), "y": np.asarray(y, dtype=np.float64), "s": np.asarray(scores)}
    )
    frame["order"] = np.arange(len(frame))
    clicked_groups = frame.groupby("group", sort=False)["y"].transform("sum") > 0
    frame = frame[clicked_groups.to_numpy()]
    if frame.empty:
        return {"page_views": 0, f"hit_rate_at_{k}": None, f"ndcg_at_{k}": None}
    frame = frame.sort_values(["group", "s", "order"], ascending=[True, False, True], kind="stable")
    rank = frame.groupby("group", sort=False).cumcount().to_numpy() + 1
    discount = 1.0 / np.log2(rank + 1.0)
    top = rank <= k
    frame = frame.assign(
        hit=frame["y"].to_numpy() * top,
        dcg=frame["y"].to_numpy() * discount * top,
    )
    per_group = frame.groupby("group", sort=False).agg(
        hit=("hit", "max"), dcg=("dcg", "sum"), clicks=("y", "sum")
    )
    ideal_discounts = np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))
    ideal = ideal_discounts[np.minimum(per_group["clicks"].to_numpy(), k).astype(int) - 1]
    return {
        "page_views": len(per_group),
        f"hit_rate_at_{k}": float(per_group["hit"].mean()),
        f"ndcg_at_{k}": float((per_group["dcg"].to_numpy() / ideal).mean()),
    }


def segment_metrics(
    segments: npt.ArrayLike, y: npt.ArrayLike, scores: npt.ArrayLike
) -> dict[str, dict[str, Any]]:
    """Per segment value: rows, actual click rate, mean score and AUC (None if one class)."""
    frame = pd.DataFrame({"segment": np.asarray(segments), "y": np.asarray(y), "s": scores})
    out: dict[str, dict[str, Any]] = {}
    for name, part in frame.groupby("segment", sort=True):
        out[str(name)] = {
            "rows": len(part),
            "ctr": float(part["y"].mean()),
            "mean_score": float(part["s"].mean()),
            "auc": auc_or_none(part["y"], part["s"]),
        }
    return out


def business_projection(
    baseline_ctr: float, model_ctr: float | None, assumptions: BusinessAssumptions
) -> dict[str, Any]:
    """A PROJECTION, not a measurement: daily clicks and value if every shown recommendation
    clicked at the held-out rate, for the baseline rate and for the model's confident ones."""
    shown = assumptions.sessions_per_day * assumptions.recs_per_session
    result: dict[str, Any] = {
        "label": "projection under stated assumptions, not a measured outcome",
        "assumptions": {
            "sessions_per_day": assumptions.sessions_per_day,
            "recs_per_session": assumptions.recs_per_session,
            "value_per_click": assumptions.value_per_click,
        },
        "recommendations_per_day": shown,
        "baseline_clicks_per_day": shown * baseline_ctr,
        "baseline_value_per_day": shown * baseline_ctr * assumptions.value_per_click,
    }
    if model_ctr is None:
        result["model_clicks_per_day"] = NOT_APPLICABLE
        return result
    result.update(
        {
            "model_clicks_per_day": shown * model_ctr,
            "model_value_per_day": shown * model_ctr * assumptions.value_per_click,
            "extra_value_per_day": shown * (model_ctr - baseline_ctr) * assumptions.value_per_click,
            "extra_value_per_year": 365
            * shown
            * (model_ctr - baseline_ctr)
            * assumptions.value_per_click,
        }
    )
    return result
