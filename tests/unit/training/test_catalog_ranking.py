"""Whole-catalog ranking metrics on hand-built toys: share@k, recall, NDCG, the next click."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from reco import NO_PRODUCT, Catalog
from training import catalog_ranking
from training.catalog import catalog_from_frame
from training.catalog_ranking import (
    MAX_CATALOG_CELLS,
    MAX_PAGES,
    CatalogPages,
    catalog_blocks,
    catalog_frame,
    page_blocks,
    page_limit,
    per_page_metrics,
    rank_positions,
    session_blocks,
)
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


def held_out(n_sessions: int, n_products: int, seed: int = 0) -> tuple[pd.DataFrame, Catalog]:
    """Sessions of 1-6 page views with 3 shown candidates each over an n_products catalog."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i}" for i in range(n_products)]
    catalog = catalog_from_frame(
        pd.DataFrame(
            {
                "product_id": ids,
                "name": ids,
                "category": "Sports",
                "subcategory": "Camping",
                "price": 10.0,
                "popularity": 0.5,
                "in_stock": rng.random(n_products) < 0.9,
            }
        )
    )
    rows = []
    for s in range(n_sessions):
        for page in range(1, int(rng.integers(1, 7)) + 1):
            current = ids[int(rng.integers(n_products))]
            for slot, candidate in enumerate(rng.choice(n_products, 3, replace=False)):
                rows.append((f"S{s}", page, current, ids[candidate], slot, rng.random() < 0.3))
    frame = pd.DataFrame(
        rows,
        columns=["session_id", "products_viewed_count", "current_product_id", "rec_product_id",
                 "slot", "recommendation_clicked"],
    )  # fmt: skip
    frame["recommendation_clicked"] = frame["recommendation_clicked"].astype(int)
    frame["timestamp"] = [f"2025-01-01T00:{p:02d}:00Z" for p in frame["products_viewed_count"]]
    return frame, catalog


def test_page_views_ranked_shrink_with_the_catalog_to_a_fixed_budget() -> None:
    assert page_limit(200) == MAX_PAGES  # the default catalog ranks what it always did
    assert page_limit(1_000) == MAX_PAGES
    assert page_limit(100_000) == MAX_CATALOG_CELLS // 100_000
    assert page_limit(1_000_000) == 2 and page_limit(10**8) == 1


def test_a_capped_selection_is_the_uncapped_one_cut_to_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame, catalog = held_out(300, 40)
    views = page_views(frame)
    full = CatalogPages.of(frame, views, catalog)
    assert len(full) == len(views)  # under the budget: every held-out page view
    monkeypatch.setattr(catalog_ranking, "MAX_CATALOG_CELLS", 40 * 50)
    capped = CatalogPages.of(frame, views, catalog)
    assert 0 < len(capped) <= 50 and len(capped) * len(catalog) <= 40 * 50
    # whole sessions, each from its first page view on (the last one may be cut short)
    assert (views.position[capped.page][np.r_[True, np.diff(capped.session) != 0]] == 0).all()
    assert (np.diff(views.position[capped.page])[np.diff(capped.session) == 0] == 1).all()
    # and each kept page view's arrays are exactly those the uncapped selection gives it
    rows = np.searchsorted(full.page, capped.page)
    np.testing.assert_array_equal(full.page[rows], capped.page)
    for name in ("session", "eligible", "clicked", "next_click"):
        np.testing.assert_array_equal(getattr(full, name)[rows], getattr(capped, name), name)


def test_blocks_hold_whole_sessions_within_the_cells_and_cover_every_page() -> None:
    frame, catalog = held_out(200, 40, seed=1)
    views = page_views(frame)
    chosen = CatalogPages.of(frame, views, catalog)
    whole = catalog_frame(frame, views, chosen, catalog, 0.0)
    for cells in (40, 40 * 7, 40 * 50, 10**9):
        blocks = list(session_blocks(chosen.session, len(catalog), cells))
        assert blocks[0].start == 0 and blocks[-1].stop == len(chosen)
        assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
        for block in blocks:
            sessions = chosen.session[block]
            assert block.start == 0 or chosen.session[block.start - 1] != sessions[0]
            assert len(sessions) * len(catalog) <= cells or len(np.unique(sessions)) == 1
    pieces = [rows for _, rows in catalog_blocks(frame, views, chosen, catalog, 0.0)]
    pd.testing.assert_frame_equal(pd.concat(pieces, ignore_index=True), whole)


def test_page_blocks_split_any_count_of_page_views() -> None:
    assert page_blocks(0, 10, 100) == []
    assert page_blocks(25, 10, 100) == [slice(0, 10), slice(10, 20), slice(20, 30)]
    assert page_blocks(3, 1_000, 10) == [slice(0, 1), slice(1, 2), slice(2, 3)]
