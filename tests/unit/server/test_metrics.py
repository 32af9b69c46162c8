"""Evaluation metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import (
    business_projection,
    classification_metrics,
    coverage_curve,
    segment_metrics,
    slate_metrics,
    top_share,
)
from training.pages import PageViews, page_views
from training.settings import BusinessAssumptions


def pages_of(groups: list[str]) -> PageViews:
    """Page views of consecutive rows sharing a group label (one session per page)."""
    frame = pd.DataFrame(
        {"session_id": groups, "products_viewed_count": 1, "timestamp": "2025-01-01T00:00:00Z"}
    )
    return page_views(frame)


def test_hit_rate_ndcg_and_random_floor_at_3_by_hand() -> None:
    groups = ["A"] * 4 + ["B"] * 5 + ["C"] * 2 + ["D"] * 3
    y = [*(0, 0, 0, 1), *(1, 1, 0, 0, 0), *(0, 0), *(0, 1, 1)]
    s = [*(0.9, 0.8, 0.7, 0.6), *(0.1, 0.9, 0.5, 0.3, 0.2), *(0.5, 0.4), *(0.5, 0.4, 0.3)]
    got = slate_metrics(pages_of(groups), y, s, k=3)
    ideal_two = 1 + 1 / math.log2(3)
    ndcg_a = 0.0  # the only click is ranked 4th
    ndcg_b = 1.0 / ideal_two  # one of two clicks at rank 1, the other at rank 5
    ndcg_d = (1 / math.log2(3) + 1 / math.log2(4)) / ideal_two  # clicks at ranks 2 and 3
    np.testing.assert_array_equal(got["hit_rate_at_3"], [0.0, 1.0, np.nan, 1.0])  # C: no click
    np.testing.assert_allclose(got["ndcg_at_3"], [ndcg_a, ndcg_b, np.nan, ndcg_d])
    # A random order misses A's one click in the top 3 with probability C(3,3)/C(4,3) = 1/4;
    # B's two clicks with C(3,3)/C(5,3) = 1/10; D's 3 candidates are all in the top 3.
    np.testing.assert_allclose(got["random_hit_rate_at_3"], [3 / 4, 9 / 10, np.nan, 1.0])


def test_ranking_ties_keep_the_original_order_and_perfect_ranking_scores_one() -> None:
    tied = slate_metrics(pages_of(["g", "g"]), [0, 1], [0.5, 0.5], k=1)
    assert tied["hit_rate_at_1"][0] == 0.0 and tied["ndcg_at_1"][0] == 0.0
    assert tied["random_hit_rate_at_1"][0] == 0.5
    perfect = slate_metrics(pages_of(["g"] * 4), [1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], k=3)
    assert perfect["hit_rate_at_3"][0] == 1.0
    assert perfect["ndcg_at_3"][0] == pytest.approx(1.0)


def test_top_share_picks_the_highest_scores_and_breaks_ties_at_random() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.5, 0.8])
    assert np.flatnonzero(top_share(scores, 2 / 6)).tolist() == [1, 5]
    three = top_share(scores, 3 / 6)
    assert three.sum() == 3 and three[[1, 5]].all() and three[[2, 3, 4]].sum() == 1
    assert coverage_curve([0, 1, 0, 0, 1, 1], scores, [2 / 6, 1.0]) == [1.0, 0.5]


def test_threshold_table_ctr_and_lift_by_hand() -> None:
    y = [1, 0, 1, 1, 0]
    s = [0.9, 0.8, 0.75, 0.3, 0.1]
    got = classification_metrics(y, s, threshold=0.7)
    assert got["baseline_ctr"] == pytest.approx(0.6)
    at_07 = next(r for r in got["threshold_table"] if r["threshold"] == 0.7)
    assert at_07 == {"threshold": 0.7, "shown": 3, "share_shown": 0.6, "clicks": 2, "ctr": 2 / 3}
    assert got["ctr_at_threshold"] == pytest.approx(2 / 3)
    assert got["lift_at_threshold"] == pytest.approx((2 / 3) / 0.6 - 1)
    assert got["accuracy"] == pytest.approx(3 / 5)  # 0.9, 0.75 and 0.1 are right at 0.5
    assert got["auc"] == pytest.approx(4 / 6)
    at_09 = next(r for r in got["threshold_table"] if r["threshold"] == 0.9)
    assert at_09["shown"] == 1 and at_09["ctr"] == 1.0
    empty = classification_metrics([0, 1], [0.1, 0.2], threshold=0.7)
    assert empty["ctr_at_threshold"] is None and empty["lift_at_threshold"] is None


def test_segments_report_rows_rate_score_and_auc() -> None:
    got = segment_metrics(["a", "a", "b", "a"], [1, 0, 1, 1], [0.8, 0.3, 0.6, 0.4])
    assert got["a"]["rows"] == 3 and got["a"]["ctr"] == pytest.approx(2 / 3)
    assert got["a"]["mean_score"] == pytest.approx(0.5)
    assert got["a"]["auc"] == 1.0
    assert got["b"]["auc"] is None  # one class only


def test_business_projection_is_labelled_and_follows_its_flags() -> None:
    got = business_projection(0.4, 0.7, BusinessAssumptions(1000, 2, 5.0))
    assert "illustration" in got["label"] and "not a measured outcome" in got["label"]
    assert got["recommendations_per_day"] == 2000
    assert got["baseline_clicks_per_day"] == pytest.approx(800)
    assert got["model_value_per_day"] == pytest.approx(2000 * 0.7 * 5)
    assert got["extra_value_per_day"] == pytest.approx(2000 * 0.3 * 5)
    assert got["extra_value_per_year"] == pytest.approx(365 * 2000 * 0.3 * 5)
