"""Candidate retrieval for catalogs above --catalog-limit: a few hundred products, never a scan.

Three sources, in this order of preference (docs/architecture.md, "Retrieval"):
1. the sparse affinity neighbours of the session's products (the product on screen, the ones
   before it, the cart, and for the sequence set the decayed view history), strongest first,
   each strength weighted by how recent its anchor is;
2. the most popular in-stock products of the session's intent subcategories (those of the
   products it viewed, by decayed weight, plus each one's most related subcategories by the
   mean affinity between subcategories), each subcategory's share of the budget following its
   weight;
3. the most popular in-stock products of the whole catalog.
Each source has a share of the budget (RetrievalMix); what one cannot fill the next ones take,
and the global list, read far enough, always fills it: a request gets min(size, eligible)
distinct candidates. Per request the work is O(size + neighbours + blocked) array operations;
everything that depends only on the model is built once at load (RetrievalIndex.build).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reco import DECAY, NO_PRODUCT, Catalog, SessionContext, SparseAffinity

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# Related subcategories each subcategory brings into the intent, and the weight they get
# relative to the subcategory that brings them (times their affinity relative to its best).
RELATED_SUBCATEGORIES = 3
RELATED_WEIGHT = 0.5
# A cart product's weight as an anchor (the product on screen weighs 1).
CART_WEIGHT = 0.5
# Up to this many blocked products are dropped by one comparison each, more by np.isin.
FEW_BLOCKED = 8


@dataclass(frozen=True)
class RetrievalMix:
    """The share of the retrieval budget each source is read to before the next one starts.
    The defaults were tuned with python -m server.recallbench on the first 200 held-out
    sessions of a 100,000-product bundle (docs/benchmarks.md reports other sessions): the
    model's top 10 lies mostly among the intent subcategories' popular products."""

    neighbours: float = 0.2
    subcategories: float = 0.7
    popular: float = 0.1

    def __post_init__(self) -> None:
        shares = (self.neighbours, self.subcategories, self.popular)
        if any(not 0.0 <= s <= 1.0 for s in shares) or not math.isclose(sum(shares), 1.0):
            raise ValueError(f"retrieval shares must lie in 0..1 and sum to 1, got {shares}")


@dataclass(frozen=True)
class RetrievalIndex:
    """The per-model lists retrieval reads, built once at load (read-only afterwards)."""

    affinity: SparseAffinity
    subcategory: I64  # each product's subcategory code, padded: NO_PRODUCT reads n_subcategories
    # In-stock products grouped by subcategory, most popular first within each:
    # by_subcategory[starts[s]:starts[s + 1]] (the spare code's group is empty).
    starts: I64
    by_subcategory: I64
    # Each subcategory's RELATED_SUBCATEGORIES most related others (-1: none) and their
    # affinity relative to the strongest of them, in 0..1.
    related: I64
    related_weight: F64
    popular: I64  # every in-stock product, most popular first
    in_stock: npt.NDArray[np.bool_]  # padded: NO_PRODUCT reads False

    @classmethod
    def build(cls, catalog: Catalog, affinity: SparseAffinity, popular: I64,
              subcategory_codes: I64, subcategory_affinity: F64) -> RetrievalIndex:  # fmt: skip
        """From the catalog, its affinity, its in-stock products by popularity (stable order),
        the padded subcategory codes and the (n_sub + 1) squared subcategory affinity
        (reco.SequenceTables holds both)."""
        n_sub = len(subcategory_affinity) - 1
        codes_of_popular = subcategory_codes[popular]
        # A stable sort by subcategory keeps popularity order within each group.
        grouped = popular[np.argsort(codes_of_popular, kind="stable")]
        counts = np.bincount(codes_of_popular, minlength=n_sub + 1)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        between = np.array(subcategory_affinity, dtype=np.float64, copy=True)
        np.fill_diagonal(between, 0.0)
        width = max(0, min(RELATED_SUBCATEGORIES, n_sub - 1))
        related = np.argsort(-between, axis=1, kind="stable")[:, :width].astype(np.int64)
        strength = np.take_along_axis(between, related, axis=1)
        best = strength[:, :1] if width else np.ones((n_sub + 1, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.nan_to_num(strength / best, nan=0.0)
        related = np.where(strength > 0, related, -1)
        in_stock = np.append(catalog.in_stock, False).astype(bool)
        return cls(affinity, subcategory_codes, starts, grouped, related, weight,
                   popular, in_stock)  # fmt: skip

    def retrieve(self, anchors: I64, weights: F64, blocked: I64, size: int,
                 mix: RetrievalMix) -> I64:  # fmt: skip
        """Up to `size` distinct in-stock products (in catalog order), none of them `blocked`,
        for a session whose products (catalog indices, NO_PRODUCT allowed) weigh `weights`."""
        known = anchors != NO_PRODUCT
        anchors, weights = anchors[known], weights[known]
        spare = len(blocked)  # read this much further into each list: blocked ones drop out
        n_neighbours = math.ceil(size * mix.neighbours)
        n_subcategories = math.ceil(size * mix.subcategories)
        n_popular = math.ceil(size * mix.popular)
        neighbours = self._neighbours(anchors, weights, size + spare)
        by_intent = self._intent(anchors, weights, n_subcategories + spare)
        popular = self.popular[: size + spare]
        ordered = np.concatenate([
            neighbours[: n_neighbours + spare], by_intent[: n_subcategories + spare],
            popular[: n_popular + spare], neighbours, by_intent, popular,
        ])  # fmt: skip
        keep = self.in_stock[ordered]
        if len(blocked) <= FEW_BLOCKED:  # the product on screen, a cart: a comparison each
            for product in blocked.tolist():
                keep &= ordered != product
        else:  # a long exclusion list: one sort-based membership test
            keep &= ~np.isin(ordered, blocked)
        ordered = ordered[keep]
        _, first = np.unique(ordered, return_index=True)
        # In catalog order, as the whole pool is: score ties then rank as they would there.
        return np.sort(ordered[np.sort(first)[:size]])

    def _neighbours(self, anchors: I64, weights: F64, need: int) -> I64:
        """The anchors' neighbours, by strength times the anchor's weight, strongest first (a
        product reached from several anchors keeps its best), at most `need` of them."""
        if not len(anchors):
            return _NONE
        indptr = self.affinity.indptr
        starts = indptr[anchors]
        lengths = indptr[anchors + 1] - starts
        total = int(lengths.sum())
        if not total:
            return _NONE
        at = _ranges(starts, lengths, total)
        products = self.affinity.related[at]
        score = self.affinity.strength[at] * np.repeat(weights, lengths)
        if total > need:  # only the strongest `need` can be kept: partition, then sort those
            top = np.argpartition(-score, need - 1)[:need]
            products, score = products[top], score[top]
        # Stable on the negated score: ties keep the anchors' order and the CSR index order.
        return products[np.argsort(-score, kind="stable")].astype(np.int64)

    def _intent(self, anchors: I64, weights: F64, budget: int) -> I64:
        """The popular products of the session's subcategories and their related ones, each
        subcategory's share of `budget` following its weight, the heaviest first."""
        if not len(anchors) or budget <= 0:
            return _NONE
        spare = len(self.starts) - 2  # the spare code: NO_PRODUCT's, an empty group
        own = self.subcategory[anchors]
        related = self.related[own]
        codes = np.concatenate([own, np.where(related < 0, spare, related).ravel()])
        weight = np.concatenate(
            [weights, (self.related_weight[own] * (RELATED_WEIGHT * weights[:, None])).ravel()]
        )
        summed = np.bincount(codes, weights=weight, minlength=spare + 1)
        summed[spare] = 0.0
        chosen = np.flatnonzero(summed > 0)
        chosen = chosen[np.argsort(-summed[chosen], kind="stable")]
        quota = np.ceil(budget * summed[chosen] / summed[chosen].sum()).astype(np.int64)
        starts = self.starts[chosen]
        lengths = np.minimum(quota, self.starts[chosen + 1] - starts)
        return self.by_subcategory[_ranges(starts, lengths, int(lengths.sum()))]


_NONE = np.empty(0, dtype=np.int64)
_NONE.flags.writeable = False


def _ranges(starts: I64, lengths: I64, total: int) -> I64:
    """The positions start, start + 1, ... (length of them) of every range, concatenated."""
    # Each position is its range's start plus its place in the concatenation minus the
    # ranges before it: one repeat and one arange.
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total)


def session_anchors(context: SessionContext, index: dict[str, int]) -> tuple[I64, F64]:
    """The session's products as catalog indices (NO_PRODUCT: unknown) and their weights: the
    product on screen 1, the ones before it DECAY per page, the cart CART_WEIGHT, and every
    product of the view history (the sequence set's) its decayed share of the views."""
    ids = [context.current_product_id, *context.previous_product_ids, *context.cart_product_ids]
    weights = [1.0, *(DECAY ** (n + 1) for n in range(len(context.previous_product_ids))),
               *(CART_WEIGHT for _ in context.cart_product_ids)]  # fmt: skip
    history = context.view_history
    if history is not None and history.total > 0:
        ids.extend(history.product_ids)
        weights.extend(w / history.total for w in history.weights)
    anchors = np.array([index.get(p, NO_PRODUCT) for p in ids], dtype=np.int64)
    return anchors, np.array(weights, dtype=np.float64)
