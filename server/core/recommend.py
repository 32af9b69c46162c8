"""Recommend: a tracked session -> candidates -> business rules -> one model call -> top-k."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from reco import NO_PRODUCT, CandidateInputs, Contribution, SessionContext
from server.core.errors import InvalidArgument, Unavailable
from server.core.exploration import Explorer
from server.core.impressions import Impression, ImpressionLog
from server.core.model import LoadedModel
from server.core.native import native_rows, native_scores
from server.core.ranking import rank
from server.core.registry import PRIMARY, ModelRegistry
from server.core.retrieval import RetrievalMix, session_anchors
from server.core.scoring import check_deadline, context_features
from server.core.sessions import SessionStore
from server.core.validation import validate_recommend

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
DEFAULT_K = 3
MAX_K = 100
# Cold start scores this many of the most popular products and answers with the best of them.
COLD_START_POOL = 50


@dataclass(frozen=True)
class RecommendLimits:
    """Candidate generation: score the whole catalog up to catalog_limit products, else only
    the retrieval_size products retrieval finds for the session (each source's share: mix)."""

    catalog_limit: int = 1000
    retrieval_size: int = 300
    mix: RetrievalMix = field(default_factory=RetrievalMix)

    def __post_init__(self) -> None:
        # Any combination of the two is valid (retrieval_size above catalog_limit, or above the
        # catalog itself, keeps the whole pool); only sizes below these cannot mean anything.
        if self.catalog_limit < 0 or self.retrieval_size < 1:
            raise ValueError(
                f"catalog_limit must be >= 0 and retrieval_size >= 1, got {self.catalog_limit} "
                f"and {self.retrieval_size}"
            )


@dataclass(frozen=True)
class RecommendQuery:
    """One Recommend call."""

    session_id: str
    k: int = DEFAULT_K
    min_score: float | None = None
    exclude_product_ids: tuple[str, ...] = ()
    explain: bool = False
    max_per_category: int = 0


@dataclass(frozen=True)
class Item:
    """A recommended product."""

    product_id: str
    name: str
    category: str
    subcategory: str
    price: float
    score: float
    reasons: list[str]
    contributions: list[Contribution] = field(default_factory=list)
    propensity: float = 1.0


@dataclass
class Recommendation:
    """The answer to a RecommendQuery."""

    items: list[Item]
    cold_start: bool
    model_version: str
    backend: str
    variant: str
    candidates_scored: int
    stage_seconds: dict[str, float]
    # What the impression log needs (filled by recommend_on): the scored candidates (catalog
    # indices), their scores and rows, the shown positions, their propensities, the policy.
    served: Served | None = None
    request_id: str = ""

    @classmethod
    def of(cls, model: LoadedModel, variant: str, items: list[Item], cold_start: bool,
           candidates_scored: int, stage_seconds: dict[str, float]) -> Recommendation:  # fmt: skip
        """The answer of `model` (its version and backend) for `variant`."""
        return cls(items, cold_start, model.version, model.backend.name, variant,
                   candidates_scored, stage_seconds)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Served:
    """A response's slate as the impression log records it (references, no copies)."""

    candidates: I64
    scores: npt.NDArray[np.float64]
    rows: npt.NDArray[np.float32]
    shown: I64
    propensities: npt.NDArray[np.float64]
    policy: str
    explored: bool = False


class Recommender:
    """Top-k products for a tracked session, from the registry's model and a session store;
    the explorer picks the slate, the impression log records it."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: SessionStore,
        limits: RecommendLimits,
        explorer: Explorer | None = None,
        impressions: ImpressionLog | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.limits = limits
        self.explorer = explorer or Explorer()
        self.impressions = impressions or ImpressionLog(None)

    def recommend(self, query: RecommendQuery, deadline: float | None = None) -> Recommendation:
        """Scores the session's candidates in one backend call and applies the rules."""
        validate_recommend(query.session_id, query.k, MAX_K, query.max_per_category,
                           query.min_score)  # fmt: skip
        model, variant = self.registry.select(query.session_id)
        t0 = time.perf_counter()
        try:
            state = self.store.get(query.session_id, deadline)
        except Unavailable as exc:
            # Degrade instead of failing: a cold-start answer is still a useful page.
            log.warning("recommending cold start for %s: %s", query.session_id, exc)
            state = None
        context = None if state is None else state.to_context()
        result = self.recommend_on(model, variant, query, context, deadline, t0)
        self._log(result, model, query.session_id, context)
        return result

    def _log(self, result: Recommendation, model: LoadedModel, session_id: str,
             context: SessionContext | None) -> None:  # fmt: skip
        """Names the response and queues it in the impression log (O(1), no copies)."""
        served = result.served
        if served is None:
            return
        result.request_id = self.impressions.new_request_id()
        impression = Impression(
            result.request_id, time.time_ns() // 1_000_000, "Recommend", session_id,
            context.customer_id if context is not None else "", result.model_version,
            result.variant or PRIMARY, served.policy, result.cold_start,
            model.catalog.product_ids, served.candidates, served.scores, served.rows,
            served.shown, served.propensities, served.explored,
        )  # fmt: skip
        self.impressions.record(impression, tuple(item.product_id for item in result.items))

    def recommend_on(self, model: LoadedModel, variant: str, query: RecommendQuery,
                     context: SessionContext | None, deadline: float | None = None,
                     t0: float | None = None) -> Recommendation:  # fmt: skip
        """Recommend for a session's context (None: unknown) against a given model (the one
        the registry picked, or one being warmed)."""
        t0 = time.perf_counter() if t0 is None else t0
        if query.explain and model.explainer is None:
            raise InvalidArgument(
                "explain", True, "needs a server started with --explain (explanations are off)"
            )
        k = query.k or DEFAULT_K
        excluded = [model.catalog.index.get(p, NO_PRODUCT) for p in query.exclude_product_ids]
        if context is None or (not context.current_product_id and not context.cart_product_ids):
            return self._cold_start(model, variant, k, excluded, t0)
        candidates = self.candidates(model, context, excluded)
        t1 = time.perf_counter()
        rows = None  # the native path builds them in C, inside the call that scores them
        if model.kernel is None:
            rows = context_features(model, context, self._inputs(model, candidates))
        t2 = time.perf_counter()
        check_deadline(deadline)
        if rows is None:
            scores = native_scores(model, context, candidates)
        else:
            scores = model.backend.predict(rows)
        t3 = time.perf_counter()
        min_score = model.threshold if query.min_score is None else query.min_score
        eligible = _cap_per_category(
            model, candidates, rank(scores, min_score, 0), query.max_per_category
        )
        choice = self.explorer.choose(variant or PRIMARY, eligible, k)
        order = choice.shown
        if rows is None and self.impressions.enabled:  # the log keeps the rows that were scored
            rows = native_rows(model, context, candidates)
        explained = None
        if query.explain:
            picked = candidates[order]
            explained = native_rows(model, context, picked) if rows is None else rows[order]
        items = self._items(model, context, candidates[order], scores[order], explained,
                            choice.propensities.tolist())  # fmt: skip
        t4 = time.perf_counter()
        stages = {"retrieval": t1 - t0, "features": t2 - t1, "predict": t3 - t2, "rank": t4 - t3}
        result = Recommendation.of(model, variant, items, False, len(candidates), stages)
        logged = rows if rows is not None else np.empty((len(candidates), 0), np.float32)
        result.served = Served(candidates, scores, logged, order, choice.propensities,
                               choice.policy, choice.explored)  # fmt: skip
        return result

    def plan(self, model: LoadedModel) -> str:
        """How Recommend finds the candidates of `model` under these limits (the load log)."""
        pool, limits = len(model.in_stock_pool), self.limits
        if pool <= limits.catalog_limit:
            limit = limits.catalog_limit
            return f"Recommend scores all {pool} in-stock products (--catalog-limit {limit})"
        source = (
            f"{len(model.tables.affinity)} affinity pairs, subcategory and catalog popularity"
            if len(model.tables.affinity)
            else "no affinity in the bundle: subcategory and catalog popularity only"
        )
        return (
            f"Recommend retrieves {min(limits.retrieval_size, pool)} of {pool} in-stock products "
            f"per call (above --catalog-limit {limits.catalog_limit}) from {source}"
        )

    def candidates(self, model: LoadedModel, context: SessionContext, excluded: list[int]) -> I64:
        """Catalog indices allowed by the business rules: in stock, not in the cart, not the
        product on screen, not excluded; all of them while they are no more than
        catalog_limit, else retrieval's (server/core/retrieval.py), without reading the pool."""
        index = model.catalog.index
        shown = (context.current_product_id, *context.cart_product_ids)
        blocked = [i for i in (*(index.get(p, NO_PRODUCT) for p in shown), *excluded)
                   if i != NO_PRODUCT]  # fmt: skip
        pool = model.in_stock_pool  # computed at load; never written
        in_pool = {i for i in blocked if model.pool_position[i] >= 0}
        if len(pool) - len(in_pool) <= self.limits.catalog_limit:
            if blocked:
                pool = pool[_kept(model.pool_position, len(pool), blocked)]
            return pool
        anchors, weights = session_anchors(context, index)
        return model.retrieval.retrieve(anchors, weights, np.asarray(blocked, dtype=np.int64),
                                        self.limits.retrieval_size, self.limits.mix)  # fmt: skip

    @staticmethod
    def _inputs(model: LoadedModel, candidates: I64) -> CandidateInputs:
        return CandidateInputs(
            model.product_category_codes[candidates], model.product_prices[candidates], candidates
        )

    def _items(self, model: LoadedModel, context: SessionContext | None, picked: I64,
               scores: npt.NDArray[np.float64], explained: npt.NDArray[np.float32] | None,
               propensities: list[float] | None = None) -> list[Item]:  # fmt: skip
        """The picked products as items; with `explained` (their rows), their top feature
        contributions; with `propensities`, each shown slot's probability under the policy."""
        listing = model.listing
        explainer = model.explainer
        contributions = (
            explainer.contributions(explained) if explained is not None and explainer else None
        )
        anchors = None if context is None else anchors_of(model, context)
        # Every (item, anchor) strength in one lookup: a searchsorted call costs microseconds.
        strengths = (
            model.tables.affinity.lookup(np.asarray(anchors[1], np.int64), picked[:, None]).tolist()
            if anchors is not None and anchors[1]
            else None
        )
        items = []
        for n, (i, score) in enumerate(zip(picked.tolist(), scores.tolist(), strict=True)):
            items.append(
                Item(
                    product_id=listing.product_ids[i],
                    name=listing.names[i],
                    category=listing.categories[i],
                    subcategory=listing.subcategories[i],
                    price=listing.prices[i],
                    score=score,
                    reasons=reasons_for(
                        model,
                        context,
                        i,
                        anchors,
                        None if strengths is None else strengths[n],
                    ),
                    contributions=contributions[n] if contributions else [],
                    propensity=propensities[n] if propensities else 1.0,
                )
            )
        return items

    def _cold_start(self, model: LoadedModel, variant: str, k: int, excluded: list[int],
                    t0: float) -> Recommendation:  # fmt: skip
        """Popular in-stock products, scored without session context (no threshold: there is
        nothing to be confident about yet), flagged as cold start. The ranking was computed at
        load (LoadedModel.cold_start); a request only drops its excluded products from it."""
        cold = model.cold_start
        dropped = [i for i in excluded if i != NO_PRODUCT]
        if dropped:
            among = np.flatnonzero(_kept(cold.position, len(cold.by_popularity), dropped))
            among = among[:COLD_START_POOL]
        else:
            among = np.arange(min(COLD_START_POOL, len(cold.by_popularity)))
        order = among[np.argsort(-cold.scores[among], kind="stable")][:k]
        picked = cold.by_popularity[order]
        items = self._items(model, None, picked, cold.scores[order], None)
        stages = {"retrieval": time.perf_counter() - t0}
        result = Recommendation.of(model, variant, items, True, len(among), stages)
        shown = np.arange(len(order), dtype=np.int64)
        result.served = Served(picked, cold.scores[order], np.empty((len(order), 0), np.float32),
                               shown, np.ones(len(order)), "cold-start")  # fmt: skip
        return result


def _kept(position: I64, size: int, dropped: list[int]) -> npt.NDArray[np.bool_]:
    """A mask over a pool of `size` products without `dropped` (catalog indices), given each
    catalog product's position in the pool (-1: not in it); a few array writes, no search."""
    keep = np.ones(size, dtype=bool)
    at = position[dropped]
    keep[at[at >= 0]] = False
    return keep


def _cap_per_category(model: LoadedModel, candidates: I64, order: I64, cap: int) -> I64:
    """Keeps at most `cap` items per category, in rank order (cap 0 = no limit)."""
    if cap <= 0:
        return order
    seen: dict[str, int] = {}
    kept = []
    categories = model.listing.categories
    for position, product in zip(order.tolist(), candidates[order].tolist(), strict=True):
        category = categories[product]
        if seen.get(category, 0) < cap:
            seen[category] = seen.get(category, 0) + 1
            kept.append(position)
    return np.asarray(kept, dtype=np.int64)


def anchors_of(model: LoadedModel, context: SessionContext) -> tuple[int, list[int]]:
    """The catalog indices reasons are given from: the current product (NO_PRODUCT: none)
    and every known one of the current and previous products."""
    index = model.catalog.index
    current = index.get(context.current_product_id, NO_PRODUCT)
    previous = [index.get(p, NO_PRODUCT) for p in context.previous_product_ids]
    return current, [i for i in (current, *previous) if i != NO_PRODUCT]


def reasons_for(model: LoadedModel, context: SessionContext | None, product: int,
                anchors: tuple[int, list[int]] | None = None,
                strengths: list[float] | None = None) -> list[str]:  # fmt: skip
    """Why a product is shown, in words a shopper understands (at most two reasons);
    `anchors`: anchors_of(model, context) when the caller has it (once per request), and
    `strengths`: the affinity of each of its related anchors to the product."""
    listing = model.listing
    subcategory = listing.subcategories[product]
    if context is None:
        return [f"popular in {subcategory}"]
    current, related = anchors_of(model, context) if anchors is None else anchors
    reasons = []
    if related:
        # The strongest association, ties to the later catalog index (as max over pairs).
        if strengths is None:
            strengths = model.tables.affinity.lookup(related, product).tolist()
        strength, anchor = max(zip(strengths, related, strict=True))
        if strength > 0:
            reasons.append(f"goes with {listing.names[anchor]}")
    if current != NO_PRODUCT and listing.subcategories[current] == subcategory:
        reasons.append(f"more {subcategory}")
    if len(reasons) < 2 and model.catalog.popularity[product] >= model.popular_from:
        reasons.append(f"popular in {subcategory}")
    return reasons[:2]
