"""Whole-catalog ranking metrics on hand-built toys: share@k, recall, NDCG, the next click."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reco import NO_PRODUCT
from training.catalog import catalog_from_frame
from training.catalog_ranking import CatalogPages, catalog_frame, per_page_metrics, rank_positions
from training.pages import page_views

N = 12  # products: enough for the top-10 cut to matter


def toy() -> tuple[CatalogPages, np.ndarray, np.ndarray]:
    """Four page views over twelve products, with the scores and relevance worked out below."""
    eligible = np.zeros((4, N), dtype=bool)
    eligible[0, [0, 1, 2, 4]] = True  # product 3 out of stock, 5.. not offered
    eligible[1, :5] = True
    eligible[2:, :] = True
    clicked = np.zeros((4, N), dtype=bool)
    clicked[0, 1] = True
    clicked[1, [2, 4]] = True
    clicked[2, 11] = True
    pages = CatalogPages(
        page=np.arange(4),
        session=np.array([0, 0, 1, 2]),
        eligible=eligible,
        clicked=clicked,
        next_click=np.array([1, 0, 11, NO_PRODUCT]),
    )
    scores = np.zeros((4, N))
    scores[0, :5] = [0.2, 0.9, 0.5, 0.99, 0.1]
    scores[1, :5] = [0.1, 0.2, 0.3, 0.4, 0.5]
    scores[2] = 1 - np.arange(N) / N  # product 11 ranks last (12th)
    scores[3] = np.arange(N)
    relevance = np.zeros((4, N))
    relevance[0, :5] = [0.9, 0.5, 0.1, 0.8, 0.3]
    relevance[1, :5] = [0.5, 0.4, 0.3, 0.2, 0.1]
    relevance[2, 11] = 1.0
    relevance[3] = 0.5
    return pages, scores, relevance


def test_ineligible_products_rank_after_every_eligible_one() -> None:
    pages, scores, _ = toy()
    ranks = rank_positions(scores, pages.eligible)
    # page 0: product 3 scores highest but is out of stock
    assert ranks[0, [1, 2, 0, 4]].tolist() == [1, 2, 3, 4]
    assert ranks[0, 3] > 4
    assert sorted(ranks[1, :5].tolist()) == [1, 2, 3, 4, 5] and ranks[1, 4] == 1


def test_share_of_the_ceilings_expected_clicks_by_hand() -> None:
    pages, scores, relevance = toy()
    got = per_page_metrics(scores, pages, relevance)
    # page 0: the ranker's top 3 (products 1, 2, 0) expect 0.5 + 0.1 + 0.9 clicks, the
    # ceiling's top 3 among the eligible (0, 1, 4) expect 0.9 + 0.5 + 0.3; product 3's 0.8
    # does not count, it cannot be recommended.
    # page 1: top 3 = 4, 3, 2 -> 0.1 + 0.2 + 0.3 against 0.5 + 0.4 + 0.3.
    # page 2: the only relevant product is ranked 12th: nothing in the top 3 or the top 10.
    np.testing.assert_allclose(got["share_at_3"], [1.5 / 1.7, 0.6 / 1.2, 0.0, 1.0])
    np.testing.assert_allclose(got["share_at_10"], [1.0, 1.0, 0.0, 1.0])


def test_recall_ndcg_and_next_click_by_hand() -> None:
    pages, scores, relevance = toy()
    got = per_page_metrics(scores, pages, relevance)
    # page 1: clicks at ranks 1 (product 4) and 3 (product 2)
    ndcg_1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    np.testing.assert_allclose(got["recall_at_10"], [1.0, 1.0, 0.0, np.nan])
    np.testing.assert_allclose(got["ndcg_at_10"], [1.0, ndcg_1, 0.0, np.nan])
    # next clicks: product 1 at rank 1; product 0 at rank 5; product 11 at rank 12; none
    np.testing.assert_allclose(got["next_reciprocal_rank"], [1.0, 1 / 5, 1 / 12, np.nan])
    np.testing.assert_allclose(got["next_recall_at_10"], [1.0, 1.0, 0.0, np.nan])


def test_the_ceiling_ranking_scores_one_and_needs_no_truth_for_click_metrics() -> None:
    pages, _, relevance = toy()
    assert np.allclose(per_page_metrics(relevance, pages, relevance)["share_at_3"], 1.0)
    without_truth = per_page_metrics(relevance, pages, None)
    assert "share_at_3" not in without_truth and "recall_at_10" in without_truth


def test_pages_of_a_frame_know_eligibility_clicks_and_the_next_click() -> None:
    catalog = catalog_from_frame(
        pd.DataFrame(
            {
                "product_id": [f"P{i}" for i in range(1, 6)],
                "name": [f"n{i}" for i in range(1, 6)],
                "category": "Sports",
                "subcategory": "Camping",
                "price": 10.0,
                "popularity": 0.5,
                "in_stock": [True, True, True, False, True],
            }
        )
    )
    rows = [  # (page, current, candidate, slot, clicked)
        (1, "P1", "P2", 0, 0),
        (1, "P1", "P3", 1, 1),
        (1, "P1", "P4", 2, 1),
        (2, "P3", "P2", 0, 0),
        (2, "P3", "P5", 1, 0),
        (3, "P5", "P1", 0, 1),
    ]
    frame = pd.DataFrame(
        {
            "session_id": "S1",
            "products_viewed_count": [r[0] for r in rows],
            "timestamp": [f"2025-01-01T00:0{r[0]}:00Z" for r in rows],
            "current_product_id": [r[1] for r in rows],
            "rec_product_id": [r[2] for r in rows],
            "rec_category": "Sports",
            "rec_price": 10.0,
            "slot": [r[3] for r in rows],
            "recommendation_clicked": [r[4] for r in rows],
        }
    )
    views = page_views(frame)
    pages = CatalogPages.of(frame, views, catalog)
    # the page on screen and out-of-stock P4 are never eligible
    assert pages.eligible.tolist()[0] == [False, True, True, False, True]
    assert pages.eligible.tolist()[1] == [True, True, False, False, True]
    # P4 was clicked on page 1 but cannot be recommended; P3 (slot 1) led to page 2
    assert pages.clicked[0].tolist() == [False, False, True, False, False]
    # page 1's next click is its first clicked slot (P3); page 2 had none, so its next click
    # is page 3's (P1)
    assert pages.next_click.tolist() == [2, 0, 0]
    expanded = catalog_frame(frame, views, pages, catalog, 0.0)
    assert len(expanded) == 3 * 5
    assert expanded["rec_product_id"].tolist()[:5] == ["P1", "P2", "P3", "P4", "P5"]
    assert (expanded["current_product_id"][:5] == "P1").all() and (expanded["slot"] == 0).all()
