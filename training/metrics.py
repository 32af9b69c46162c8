"""Evaluation metrics: classification, thresholds, the shown slate, coverage, segments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from training.pages import PageViews
from training.settings import DEFAULT_THRESHOLD, BusinessAssumptions

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
TOP_K = 3
NOT_APPLICABLE = "not applicable"
COVERAGE_SEED = 3

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


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


def slate_metrics(
    pages: PageViews, y: npt.ArrayLike, scores: npt.ArrayLike, k: int = TOP_K
) -> dict[str, F64]:
    """Per page view, ranking only the candidates it showed: hit@k, NDCG@k and the random floor.

    Candidates are ranked by score within their page view, ties in row order. hit = a clicked
    candidate is in the top k; NDCG = DCG@k / ideal DCG@k with gain 1 per click and discount
    1 / log2(rank + 1); random = the hit rate a random order gets on that page,
    1 - C(n - c, k) / C(n, k) for n candidates of which c were clicked. NaN for page views
    without a click (nothing to find).
    """
    labels = np.asarray(y, dtype=np.float64)
    values = np.asarray(scores, dtype=np.float64)
    page = pages.row_page
    rows = np.arange(len(labels))
    order = np.lexsort((rows, -values, page))
    sorted_page = page[order]
    starts = np.flatnonzero(np.r_[True, sorted_page[1:] != sorted_page[:-1]])
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = rows - np.repeat(starts, np.diff(np.r_[starts, len(rows)])) + 1
    n_pages = len(pages)
    clicks = np.bincount(page, labels, minlength=n_pages)
    shown = np.bincount(page, minlength=n_pages).astype(np.float64)
    top = rank <= k
    hits = np.bincount(page, labels * top, minlength=n_pages) > 0
    dcg = np.bincount(page, labels * top / np.log2(rank + 1.0), minlength=n_pages)
    ideal = np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))
    best = ideal[np.clip(clicks.astype(np.int64), 1, k) - 1]
    misses = shown - clicks
    # C(misses, k) / C(shown, k) as a product of k ratios, 0 once misses < k
    no_hit = np.ones(n_pages)
    for j in range(k):
        no_hit *= np.clip(misses - j, 0, None) / np.maximum(shown - j, 1)
    clicked = clicks > 0
    return {
        f"hit_rate_at_{k}": np.where(clicked, hits * 1.0, np.nan),
        f"ndcg_at_{k}": np.where(clicked, dcg / best, np.nan),
        f"random_hit_rate_at_{k}": np.where(clicked, 1.0 - no_hit, np.nan),
    }


def top_share(scores: npt.ArrayLike, coverage: float, seed: int = COVERAGE_SEED) -> B:
    """The round(coverage x rows) highest-scoring rows (ties broken at random, seeded)."""
    values = np.asarray(scores, dtype=np.float64)
    n = round(coverage * len(values))
    tie = np.random.default_rng(seed).random(len(values))
    chosen = np.lexsort((tie, -values))[:n]
    mask = np.zeros(len(values), dtype=bool)
    mask[chosen] = True
    return mask


def coverage_curve(
    y: npt.ArrayLike, scores: npt.ArrayLike, coverages: Sequence[float]
) -> list[float | None]:
    """CTR of the top `coverage` share of rows, for each coverage."""
    labels = np.asarray(y, dtype=np.float64)
    out: list[float | None] = []
    for c in coverages:
        mask = top_share(scores, c)
        out.append(float(labels[mask].mean()) if mask.any() else None)
    return out


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
    """An ILLUSTRATION, not a measurement: daily clicks and value if every shown recommendation
    clicked at the held-out rate, for the baseline rate and for the model's confident ones."""
    shown = assumptions.sessions_per_day * assumptions.recs_per_session
    result: dict[str, Any] = {
        "label": "illustration under stated assumptions (a projection), not a measured outcome",
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
