"""The sequence-aware features: recency-decayed history of everything a session viewed.

The candidate feature set sees the product on screen and the three before it. This one also
folds the whole ordered history of a session's page views into decayed shares: after each page
view every weight is multiplied by DECAY and the product on screen adds 1, so a view k pages ago
weighs DECAY**k. A candidate is then described by the decayed share of the session's views in
its subcategory, in its category, of itself, its decayed co-view affinity to every viewed
product, and whether it shares the subcategory of the product on screen, of the previous three
and of the page the session landed on; plus the slot it is shown in.

Training and serving run the same two functions (History.advance, history_columns) on the same
float64 operations, so a serving-side history folded from a session's views reproduces the
training rows bit for bit (tests/unit/test_sequence.py). Training walks all sessions at once,
one page position at a time (training/sequence.py); serving folds one session's views with
history_from_views.
Serving scores every candidate as if shown in slot 0 (SERVING_SLOT): the slot only corrects
the position bias of logged clicks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reco._catalog import NO_PRODUCT, Catalog, ProductTables

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DECAY = 0.5  # per page view: the view before the current one weighs half as much
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

    Index NO_PRODUCT (-1) lands on the last entry, whose code is the spare last column of the
    history arrays: an unknown product adds to no real subcategory or category.
    """

    subcategory: I64
    category: I64
    n_subcategories: int
    n_categories: int
    affinity: npt.NDArray[np.float32]  # ProductTables.affinity: (products + 1, products + 1)
    # Mean product affinity between two subcategories: (subcategories + 1) squared, zero padded.
    subcategory_affinity: F64

    @classmethod
    def build(cls, catalog: Catalog, tables: ProductTables) -> SequenceTables:
        """Codes by sorted distinct value, as the catalog in the bundle holds them."""
        sub_values, sub_codes = np.unique(catalog.subcategories, return_inverse=True)
        cat_values, cat_codes = np.unique(catalog.categories, return_inverse=True)
        n_sub = len(sub_values)
        member = np.zeros((len(catalog), n_sub + 1))
        member[np.arange(len(catalog)), sub_codes] = 1.0
        strength = tables.affinity[: len(catalog), : len(catalog)].astype(np.float64)
        pairs = member.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (member.T @ strength @ member) / np.outer(pairs, pairs)
        return cls(
            subcategory=np.append(sub_codes, n_sub).astype(np.int64),
            category=np.append(cat_codes, len(cat_values)).astype(np.int64),
            n_subcategories=n_sub,
            n_categories=len(cat_values),
            affinity=tables.affinity,
            subcategory_affinity=np.nan_to_num(mean, nan=0.0),
        )


@dataclass
class History:
    """Decayed view weights of n sessions (rows); the last column of each array is padding.

    Mutable on purpose: advance() updates rows in place, so training can walk many sessions
    without copying their whole state at every page view.
    """

    subcategory: F64  # (n, subcategories + 1)
    category: F64  # (n, categories + 1)
    product: F64  # (n, products + 1)
    affinity: F64  # (n, products + 1): decayed sum of the viewed products' affinity rows
    subcategory_affinity: F64  # (n, subcategories + 1): the same for their subcategories
    total: F64  # (n,): decayed number of views
    landing: I64  # (n,): subcategory code of the first view, -1 before any

    @classmethod
    def empty(cls, n: int, tables: SequenceTables) -> History:
        """n sessions that have viewed nothing yet."""
        products = len(tables.subcategory)
        return cls(
            subcategory=np.zeros((n, tables.n_subcategories + 1)),
            category=np.zeros((n, tables.n_categories + 1)),
            product=np.zeros((n, products)),
            affinity=np.zeros((n, products)),
            subcategory_affinity=np.zeros((n, tables.n_subcategories + 1)),
            total=np.zeros(n),
            landing=np.full(n, -1, dtype=np.int64),
        )

    def advance(self, rows: I64, viewed: I64, tables: SequenceTables) -> None:
        """Sessions `rows` (distinct) view one more product each (catalog index, NO_PRODUCT ok)."""
        sub = tables.subcategory[viewed]
        self.landing[rows] = np.where(self.total[rows] == 0, sub, self.landing[rows])
        for weights, column in (
            (self.subcategory, sub),
            (self.category, tables.category[viewed]),
            (self.product, viewed),
        ):
            weights[rows] = weights[rows] * DECAY
            weights[rows, column] += 1.0
        self.affinity[rows] = self.affinity[rows] * DECAY + tables.affinity[viewed]
        self.subcategory_affinity[rows] = (
            self.subcategory_affinity[rows] * DECAY + tables.subcategory_affinity[sub]
        )
        self.total[rows] = self.total[rows] * DECAY + 1.0

    def take(self, rows: I64) -> History:
        """A copy of the given rows."""
        return History(
            self.subcategory[rows],
            self.category[rows],
            self.product[rows],
            self.affinity[rows],
            self.subcategory_affinity[rows],
            self.total[rows],
            self.landing[rows],
        )


def history_columns(
    history: History,
    row: I64,
    candidate: I64,
    current: I64,
    previous: I64,
    slot: F64,
    tables: SequenceTables,
) -> list[F64]:
    """SEQUENCE_FEATURES for candidates (catalog indices) of the sessions history[row].

    current and previous (k, 3) are the catalog indices of the product on screen and the three
    before it, per candidate. Shares are NaN for a session that has viewed nothing.
    """
    sub = tables.subcategory[candidate]
    known = candidate != NO_PRODUCT
    total = history.total[row]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = [
            history.subcategory[row, sub] / total,
            history.category[row, tables.category[candidate]] / total,
            history.product[row, candidate] / total,
            history.affinity[row, candidate] / total,
            history.subcategory_affinity[row, sub] / total,
        ]
    previous_sub = tables.subcategory[previous]
    return [
        *shares,
        ((sub == tables.subcategory[current]) & known) * 1.0,
        ((previous_sub == sub[:, None]).any(axis=1) & known) * 1.0,
        ((sub == history.landing[row]) & known) * 1.0,
        np.asarray(slot, dtype=np.float64),
    ]


def history_from_views(
    viewed_product_ids: Sequence[str], catalog: Catalog, tables: SequenceTables
) -> History:
    """The serving side: one session's history from its views, oldest first (the current last).

    Product ids not in the catalog count as views of no known product.
    """
    history = History.empty(1, tables)
    row = np.zeros(1, dtype=np.int64)
    for product_id in viewed_product_ids:
        viewed = np.array([catalog.index.get(product_id, NO_PRODUCT)], dtype=np.int64)
        history.advance(row, viewed, tables)
    return history
