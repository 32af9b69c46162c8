"""Whole-catalog ranking: every eligible product ranked for each held-out page view.

The shown slate holds 1-5 candidates, so ranking it says little (a random order already puts a
clicked one in the top 3 most of the time). Here every ranker orders the whole eligible catalog
(in stock, not the product on screen) for the page view's context, and is scored per page view:

- share@k: the simulator's expected clicks of the ranker's top k over those of the simulator's
  own top k (generated data only): 1.0 is the ceiling's ranking.
- recall@10 and NDCG@10 of the products clicked on the page (gain 1 per click).
- next click: the product the shopper clicks next (on this page or a later one of the session);
  recall@10 and reciprocal rank (MRR when averaged) of it in the ranking.

Ties are broken at random (seeded), so a ranker gains nothing from the catalog's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import NO_PRODUCT, Catalog
from training.pages import PageViews
from training.schema import LABEL, SLOT

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

SHARE_AT = (3, 10)
TOP = 10
TIE_SEED = 7
# At most this many held-out page views are ranked (whole sessions, chosen at random): each
# costs one feature row per catalog product.
MAX_PAGES = 2_000
# ... and at most this many (page view, product) pairs: a big catalog ranks fewer page views
# (page_limit), so memory and time stay bounded whatever the catalog's size.
MAX_CATALOG_CELLS = 2_000_000
# Feature rows built at once (whole sessions; one longer session is a block of its own).
BLOCK_CELLS = 500_000
SAMPLE_SEED = 11


@dataclass(frozen=True)
class CatalogPages:
    """Held-out page views to rank the catalog for: which products are eligible, which clicked.

    Arrays have one row per page view (pages, in PageViews order of the sampled sessions) and
    one column per catalog product.
    """

    page: I64  # index into the PageViews of the held-out frame
    session: I64  # session number of each page (the bootstrap unit)
    eligible: B
    clicked: B
    next_click: I64  # catalog index of the next clicked product, NO_PRODUCT if none

    def __len__(self) -> int:
        return len(self.page)

    @classmethod
    def of(cls, frame: pd.DataFrame, pages: PageViews, catalog: Catalog) -> CatalogPages:
        """The page views of whole sessions of `frame`: all of them up to page_limit, else a
        random sample of sessions of about that many page views (the last session cut short
        if the cells would exceed MAX_CATALOG_CELLS)."""
        n_products = len(catalog)
        keep = np.isin(pages.session, _sample_sessions(pages, page_limit(n_products)))
        over = np.flatnonzero(keep)[max(1, MAX_CATALOG_CELLS // max(n_products, 1)) :]
        keep[over] = False  # a session's first page views keep their history: it is earlier
        page = np.flatnonzero(keep)
        shown = catalog.indices_of(frame["rec_product_id"].astype(str).to_numpy())
        current = catalog.indices_of(frame["current_product_id"].astype(str).to_numpy())
        clicked_rows = frame[LABEL].to_numpy() == 1
        next_click = _next_in_session(
            _first_click(frame, pages, shown, clicked_rows), pages.session
        )
        # Rows of the kept page views only: (kept pages, products) whatever the held-out size.
        position = np.full(len(pages), -1, dtype=np.int64)
        position[page] = np.arange(len(page))
        rows = clicked_rows & keep[pages.row_page]
        clicked = np.zeros((len(page), n_products + 1), dtype=bool)
        clicked[position[pages.row_page[rows]], shown[rows]] = True
        eligible = np.broadcast_to(catalog.in_stock, (len(page), n_products)).copy()
        eligible[np.arange(len(page)), current[pages.first_row[page]]] = False
        return cls(
            page=page,
            session=pages.session[page],
            eligible=eligible,
            clicked=clicked[:, :n_products] & eligible,
            next_click=next_click[page],
        )


def page_limit(n_products: int) -> int:
    """Page views ranked against a catalog of n_products: MAX_PAGES, fewer for big catalogs."""
    return max(1, min(MAX_PAGES, MAX_CATALOG_CELLS // max(n_products, 1)))


def sample_fields(held_out: int, n_products: int) -> dict[str, int]:
    """What the metrics say about the sample: every held-out page view is ranked unless the
    catalog is big, then at most page_views_limit of them (pages x products <= max_cells)."""
    return {
        "held_out_page_views": held_out,
        "page_views_limit": page_limit(n_products),
        "max_cells": MAX_CATALOG_CELLS,
    }


def _sample_sessions(pages: PageViews, limit: int) -> I64:
    """Sessions to rank: all of them, or a random set with about `limit` page views."""
    sessions = np.arange(pages.n_sessions)
    if len(pages) <= limit:
        return sessions
    shuffled = np.random.default_rng(SAMPLE_SEED).permutation(sessions)
    sizes = np.bincount(pages.session, minlength=pages.n_sessions)[shuffled]
    return np.sort(shuffled[: int(np.searchsorted(np.cumsum(sizes), limit)) + 1])


def _first_click(frame: pd.DataFrame, pages: PageViews, shown: I64, clicked: B) -> I64:
    """Per page view: the product of its first clicked slot (the page it led to), or none."""
    slot = (
        frame[SLOT].to_numpy(np.float64)
        if SLOT in frame.columns
        else np.arange(len(frame), dtype=np.float64)
    )
    rows = np.flatnonzero(clicked)
    order = rows[np.lexsort((slot[rows], pages.row_page[rows]))]
    first = np.full(len(pages), NO_PRODUCT, dtype=np.int64)
    page = pages.row_page[order]
    leading = np.r_[True, page[1:] != page[:-1]] if len(page) else np.zeros(0, dtype=bool)
    first[page[leading]] = shown[order[leading]]
    return first


def _next_in_session(first_click: I64, session: I64) -> I64:
    """For each page, the first click on it or on a later page of the same session."""
    out = first_click.copy()
    for p in range(len(out) - 2, -1, -1):
        if out[p] == NO_PRODUCT and session[p + 1] == session[p]:
            out[p] = out[p + 1]
    return out


def rank_positions(scores: F64, eligible: B) -> I64:
    """1-based rank of every product per page (ineligible products rank after all others)."""
    tie = np.random.default_rng(TIE_SEED).random(scores.shape)
    key = np.where(eligible, scores, -np.inf)
    order = np.lexsort((tie, -key), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=-1)
    return ranks


def per_page_metrics(scores: F64, pages: CatalogPages, relevance: F64 | None) -> dict[str, F64]:
    """Each metric per page view (NaN where it is undefined, e.g. recall without a click)."""
    ranks = rank_positions(scores, pages.eligible)
    n = len(pages)
    out: dict[str, F64] = {}
    if relevance is not None:
        ideal = rank_positions(relevance, pages.eligible)
        gain = np.where(pages.eligible, relevance, 0.0)
        for k in SHARE_AT:
            best = (gain * (ideal <= k)).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"share_at_{k}"] = (gain * (ranks <= k)).sum(axis=1) / best
    clicks = pages.clicked.sum(axis=1).astype(np.float64)
    top = ranks <= TOP
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"recall_at_{TOP}"] = np.where(
            clicks > 0, (pages.clicked & top).sum(axis=1) / clicks, np.nan
        )
        discount = 1.0 / np.log2(ranks + 1.0)
        dcg = (pages.clicked * top * discount).sum(axis=1)
        ideal_dcg = np.cumsum(1.0 / np.log2(np.arange(2, TOP + 2)))
        best_dcg = ideal_dcg[np.clip(clicks.astype(np.int64), 1, TOP) - 1]
        out[f"ndcg_at_{TOP}"] = np.where(clicks > 0, dcg / best_dcg, np.nan)
    has_next = pages.next_click != NO_PRODUCT
    next_rank = np.full(n, np.inf)
    rows = np.flatnonzero(has_next)
    eligible_next = pages.eligible[rows, pages.next_click[rows]]
    next_rank[rows[eligible_next]] = ranks[
        rows[eligible_next], pages.next_click[rows[eligible_next]]
    ]
    out[f"next_recall_at_{TOP}"] = np.where(has_next, next_rank <= TOP, np.nan)
    out["next_reciprocal_rank"] = np.where(has_next, 1.0 / next_rank, np.nan)
    return out


def catalog_frame(
    frame: pd.DataFrame, pages: PageViews, chosen: CatalogPages, catalog: Catalog, slot: float
) -> pd.DataFrame:
    """Rows (page view x every catalog product), page-major: each chosen page's session columns
    with every product as the candidate, in slot `slot`. Score it with any ranker and reshape
    the scores to (pages, products)."""
    return _expanded(frame, pages.first_row[chosen.page], catalog, slot)


def catalog_blocks(
    frame: pd.DataFrame, pages: PageViews, chosen: CatalogPages, catalog: Catalog, slot: float
) -> Iterator[tuple[slice, pd.DataFrame]]:
    """catalog_frame a block of chosen page views at a time: (the block's page views, their
    rows). Blocks hold whole sessions (the sequence features read a session's earlier pages)
    and at most BLOCK_CELLS rows unless one session alone is longer."""
    for block in session_blocks(chosen.session, len(catalog), BLOCK_CELLS):
        yield block, _expanded(frame, pages.first_row[chosen.page[block]], catalog, slot)


def session_blocks(session: I64, n_products: int, cells: int) -> Iterator[slice]:
    """Consecutive runs of whole sessions of at most `cells` page x product pairs each (one
    session per block when a session alone is longer)."""
    if not len(session):
        return
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]]).tolist()
    ends = [*starts[1:], len(session)]
    per_block = max(1, cells // max(n_products, 1))  # page views per block
    first = 0
    for end, next_end in zip(ends, [*ends[1:], None], strict=True):
        # Close the block at this session's end when the next session would overflow it.
        if next_end is None or next_end - first > per_block:
            yield slice(first, end)
            first = end


def page_blocks(n_pages: int, n_products: int, cells: int) -> list[slice]:
    """Page views a block at a time, at most `cells` page x product pairs per block (one page
    view when a catalog alone is larger)."""
    per_block = max(1, cells // max(n_products, 1))
    return [slice(start, start + per_block) for start in range(0, n_pages, per_block)]


def _expanded(frame: pd.DataFrame, rows: I64, catalog: Catalog, slot: float) -> pd.DataFrame:
    """Each of `rows` (frame positions) repeated once per catalog product, as its candidate."""
    n_products = len(catalog)
    first = frame.iloc[np.repeat(rows, n_products)]
    return first.assign(
        rec_product_id=np.tile(catalog.product_ids, len(rows)),
        rec_category=np.tile(catalog.categories, len(rows)),
        rec_price=np.tile(catalog.prices.astype(np.float64), len(rows)),
        **{SLOT: slot},
    ).reset_index(drop=True)
