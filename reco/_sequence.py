"""The sequence-aware features: recency-decayed history of everything a session viewed.

The candidate feature set sees the product on screen and the three before it. This one also
folds the whole ordered history of a session's page views into decayed weights: at each page
view every weight is multiplied by DECAY and the product on screen adds 1, so a view k pages ago
weighs DECAY**k. A candidate is then described by the decayed share of the session's views in
its subcategory, in its category, of itself, its decayed co-view affinity to every viewed
product, and whether it shares the subcategory of the product on screen, of the previous three
and of the page the session landed on; plus the slot it is shown in.

What a session keeps is a ViewHistory: catalog-free (product ids, not catalog indices), folded
one view at a time (ViewHistory.after_view) by the session stores as events arrive and by
training page by page, and bounded (MAX_HISTORY products). Per request it becomes Histories
(catalog indices and weights, session-level vectors) and history_columns gathers every column
from those vectors and the candidate's catalog index, summing the viewed products in their
first-view order, the same float64 operations in training and in serving: the rows agree bit
for bit (tests/unit/reco/test_sequence.py, tests/unit/server/test_sequence_serving.py).
Serving scores every candidate as if shown in slot 0 (SERVING_SLOT): the slot only corrects
the position bias of logged clicks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reco._catalog import NO_PRODUCT, Catalog, ProductTables, SparseAffinity

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DECAY = 0.5  # per page view: the view before the current one weighs half as much
# Distinct products a ViewHistory keeps; a new one beyond it replaces the lightest (a view
# MAX_HISTORY pages ago weighs 2**-64). The simulator's longest session has 40 page views,
# so training never reaches it.
MAX_HISTORY = 64
SERVING_SLOT = 0.0

SEQUENCE_FEATURES: tuple[str, ...] = (
    "hist_subcategory_share",
    "hist_category_share",
    "hist_product_share",
    "hist_affinity",
    "hist_subcategory_affinity",
    "same_subcategory",
    "previous_same_subcategory",
    "landing_same_subcategory",
    "slot",
)


@dataclass(frozen=True)
class SequenceTables:
    """Per-product subcategory and category codes (from the catalog), padded for NO_PRODUCT.

    Index NO_PRODUCT (-1) lands on the last entry, whose code is a spare one: an unknown
    product shares no real subcategory or category.
    """

    subcategory: I64
    category: I64
    n_subcategories: int
    n_categories: int
    affinity: SparseAffinity  # ProductTables.affinity
    # Mean product affinity between two subcategories: (subcategories + 1) squared, zero padded.
    subcategory_affinity: F64

    @classmethod
    def build(cls, catalog: Catalog, tables: ProductTables) -> SequenceTables:
        """Codes by sorted distinct value, as the catalog in the bundle holds them."""
        sub_values, sub_codes = np.unique(catalog.subcategories, return_inverse=True)
        cat_values, cat_codes = np.unique(catalog.categories, return_inverse=True)
        n_sub = len(sub_values)
        mean = _subcategory_means(sub_codes.astype(np.int64), n_sub, tables.affinity)
        return cls(
            subcategory=np.append(sub_codes, n_sub).astype(np.int64),
            category=np.append(cat_codes, len(cat_values)).astype(np.int64),
            n_subcategories=n_sub,
            n_categories=len(cat_values),
            affinity=tables.affinity,
            subcategory_affinity=mean,
        )


def _subcategory_means(sub_codes: I64, n_sub: int, affinity: SparseAffinity) -> F64:
    """Mean product affinity from each subcategory to each other, over every product pair (the
    pairs the table does not hold count as 0): (n_sub + 1) squared, the spare code's row and
    column 0, as is a subcategory without products."""
    side = n_sub + 1
    rows = np.repeat(np.arange(affinity.n_products + 1, dtype=np.int64), np.diff(affinity.indptr))
    codes = np.append(sub_codes, n_sub)
    pair = codes[rows] * side + codes[affinity.related]
    weights = affinity.strength.astype(np.float64)
    sums = np.bincount(pair, weights=weights, minlength=side * side).reshape(side, side)
    members = np.bincount(sub_codes, minlength=side).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / np.outer(members, members)
    return np.nan_to_num(mean, nan=0.0)


@dataclass(frozen=True, slots=True)
class ViewHistory:
    """One session's decayed views, as a session store keeps it: plain values, no catalog.

    weights[i] is the decayed number of views of product_ids[i] (in order of first view);
    total the decayed number of all views; landing_product_id the session's first view.
    """

    product_ids: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    total: float = 0.0
    landing_product_id: str = ""

    def after_view(self, product_id: str) -> ViewHistory:
        """The history after one more page view (for stores and training)."""
        return self.after_views((product_id,))

    def after_views(self, product_ids: Sequence[str]) -> ViewHistory:
        """The history after these page views, oldest first: the one fold, view by view (in
        one pass, without a ViewHistory per view: a request's history is folded per call)."""
        ids, weights = list(self.product_ids), list(self.weights)
        total, landing = self.total, self.landing_product_id
        for product_id in product_ids:
            weights = [weight * DECAY for weight in weights]
            if product_id in ids:
                weights[ids.index(product_id)] += 1.0
            else:
                ids.append(product_id)
                weights.append(1.0)
                if len(ids) > MAX_HISTORY:
                    lightest = weights.index(min(weights))
                    del ids[lightest], weights[lightest]
            total = total * DECAY + 1.0
            landing = landing or product_id
        return ViewHistory(tuple(ids), tuple(weights), total, landing)

    @classmethod
    def of_views(cls, product_ids: Sequence[str]) -> ViewHistory:
        """The history of these views, oldest first."""
        return cls().after_views(product_ids)

    def to_row(self) -> tuple[Any, ...]:
        """Plain values (tuples, strings, floats) for the stores' encodings."""
        return (self.product_ids, self.weights, self.total, self.landing_product_id)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ViewHistory:
        """The inverse of to_row (JSON lists are accepted for the tuples)."""
        ids, weights, total, landing = row
        return cls(tuple(ids), tuple(float(w) for w in weights), float(total), landing)


@dataclass(frozen=True)
class Histories:
    """ViewHistory of n sessions against one catalog: the session-level vectors.

    index and weight are (n, k), in first-view order, padded with NO_PRODUCT and weight 0 (k is
    the longest history, at least 1); total (n,); landing (n,) the catalog index of the first
    view. Products not in the catalog are NO_PRODUCT: views of no known product.
    """

    index: I64
    weight: F64
    total: F64
    landing: I64

    @classmethod
    def of(cls, histories: Sequence[ViewHistory], catalog_index: Mapping[str, int]) -> Histories:
        """The vectors of these histories (row i = histories[i])."""
        n = len(histories)
        width = max([1, *(len(h.product_ids) for h in histories)])
        index = np.full((n, width), NO_PRODUCT, dtype=np.int64)
        weight = np.zeros((n, width))
        get = catalog_index.get
        for row, history in enumerate(histories):
            k = len(history.product_ids)
            if k:
                index[row, :k] = [get(p, NO_PRODUCT) for p in history.product_ids]
                weight[row, :k] = history.weights
        landing = [get(h.landing_product_id, NO_PRODUCT) for h in histories]
        return cls(
            index=index,
            weight=weight,
            total=np.array([h.total for h in histories], dtype=np.float64),
            landing=np.array(landing, dtype=np.int64).reshape(n),
        )


def _decayed_sum(weight: F64, value: npt.NDArray[Any]) -> F64:
    """Sum over the history's products, in order (add.accumulate is sequential by definition,
    so the result does not depend on how many rows or padding columns are summed at once)."""
    terms = weight * value
    summed: F64 = np.add.accumulate(terms, axis=1)[:, -1]
    return summed


def history_columns(
    histories: Histories,
    row: I64,
    candidate: I64,
    current: I64,
    previous: I64,
    slot: F64,
    tables: SequenceTables,
) -> list[F64]:
    """SEQUENCE_FEATURES for candidates (catalog indices) of the sessions histories[row].

    current and previous (k, 3) are the catalog indices of the product on screen and the three
    before it, per candidate. Shares are NaN for a session that has viewed nothing.
    """
    seen = histories.index[row]  # (rows, products in the history)
    weight = histories.weight[row]
    total = histories.total[row]
    sub = tables.subcategory[candidate]
    seen_sub = tables.subcategory[seen]
    known = candidate != NO_PRODUCT
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = [
            _decayed_sum(weight, seen_sub == sub[:, None]) / total,
            _decayed_sum(weight, tables.category[seen] == tables.category[candidate][:, None])
            / total,
            _decayed_sum(weight, seen == candidate[:, None]) / total,
            _decayed_sum(weight, tables.affinity.lookup(seen, candidate[:, None])) / total,
            _decayed_sum(weight, tables.subcategory_affinity[seen_sub, sub[:, None]]) / total,
        ]
    previous_sub = tables.subcategory[previous]
    landing_sub = tables.subcategory[histories.landing[row]]
    return [
        *shares,
        ((sub == tables.subcategory[current]) & known) * 1.0,
        ((previous_sub == sub[:, None]).any(axis=1) & known) * 1.0,
        ((sub == landing_sub) & known) * 1.0,
        np.asarray(slot, dtype=np.float64),
    ]
