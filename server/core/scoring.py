"""Score: one context and a batch of candidates -> features -> one backend call -> ranking."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reco import NO_PRODUCT, CandidateInputs, SessionContext
from server.core.errors import DeadlineExceeded, InvalidArgument, NotFound, echo
from server.core.impressions import Impression, ImpressionLog
from server.core.model import LoadedModel
from server.core.native import native_rows, native_scores
from server.core.ranking import rank
from server.core.registry import PRIMARY, ModelRegistry
from server.core.requests import Candidates, FeatureRows, ScoreQuery, ScoreResult
from server.core.sessions import SessionStore
from server.core.validation import (
    validate_candidates,
    validate_context,
    validate_feature_rows,
    validate_score_options,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Limits:
    """Request size limits (the message-size limit is set on the transport)."""

    max_candidates: int = 1000


@dataclass(frozen=True)
class ResolvedCandidates:
    """The rows to score (catalog indices, NO_PRODUCT = unknown with a given category and
    price), their category codes and prices when any differ from the catalog's (None: the
    catalog's, so the native path passes none), and what could not be scored."""

    index: I64
    codes: F32 | None
    prices: F32 | None
    scored_rows: I64 | None  # None = every candidate is scored
    unknown_product_ids: list[str]

    def inputs(self, model: LoadedModel) -> CandidateInputs:
        """The numpy builder's candidate columns."""
        codes = model.product_category_codes[self.index] if self.codes is None else self.codes
        prices = model.product_prices[self.index] if self.prices is None else self.prices
        return CandidateInputs(codes, prices, self.index)


def check_deadline(deadline: float | None) -> None:
    """Abandons the work once the caller's deadline (time.monotonic() seconds) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("deadline exceeded; the request was abandoned")


def candidate_indices(model: LoadedModel, product_ids: list[str]) -> tuple[I64, int]:
    """The catalog indices of product_ids (NO_PRODUCT = unknown) and how many are unknown:
    from the request kernel's id table (one call into C) on the native path, else a dict
    lookup per id."""
    if model.kernel is not None:
        found = model.kernel.lookup(product_ids)
        if found is not None:
            return found
    get = model.catalog.index.get
    listed = [get(pid, NO_PRODUCT) for pid in product_ids]
    return np.array(listed, dtype=np.int64), listed.count(NO_PRODUCT)


def resolve_candidates(
    model: LoadedModel, candidates: Candidates, skip_unknown: bool
) -> ResolvedCandidates:
    """Catalog lookups for id-only candidates, overrides applied, unknown products handled.

    An unknown product can still be scored when the request gives its category and price.
    """
    index, unknown = candidate_indices(model, candidates.product_ids)
    if not (candidates.categories or candidates.prices or unknown):
        return ResolvedCandidates(index, None, None, None, [])
    codes = model.product_category_codes[index]
    prices = model.product_prices[index]
    code_of = model.encodings.category.code
    for i, category in candidates.categories.items():
        codes[i] = code_of(category)
    for i, price in candidates.prices.items():
        prices[i] = price
    # Only unknown products can lack a category or price after the overrides.
    unscorable = np.isnan(codes) | np.isnan(prices)
    if not unscorable.any():
        return ResolvedCandidates(index, codes, prices, None, [])
    missing = np.flatnonzero(unscorable)
    unknown_ids = [candidates.product_ids[i] for i in missing.tolist()]
    if not skip_unknown:
        first = int(missing[0])
        raise NotFound(
            f"{candidates.id_path(first)} {echo(unknown_ids[0])} is not in the catalog of model "
            f"{model.version} (send its category and price to score it, or set skip_unknown)"
            + (f"; {len(unknown_ids) - 1} more unknown" if len(unknown_ids) > 1 else "")
        )
    rows = np.flatnonzero(~unscorable)
    return ResolvedCandidates(index[rows], codes[rows], prices[rows], rows, unknown_ids)


def context_features(
    model: LoadedModel, context: SessionContext, candidates: CandidateInputs
) -> F32:
    """The model's input rows for one context and its candidates (the shared feature builder)."""
    return model.rows(context, candidates)


def decode_feature_rows(rows: FeatureRows) -> F32:
    """The client's float32 matrix, viewed in place (no copy)."""
    return np.frombuffer(rows.data, dtype="<f4").reshape(rows.rows, rows.cols)


class Scorer:
    """Scores ScoreQuery objects against the registry's current model."""

    def __init__(self, registry: ModelRegistry, limits: Limits, sessions: SessionStore,
                 impressions: ImpressionLog | None = None) -> None:  # fmt: skip
        self.registry = registry
        self.limits = limits
        self.sessions = sessions
        self.impressions = impressions or ImpressionLog(None)

    def score(self, query: ScoreQuery, deadline: float | None = None) -> ScoreResult:
        """Scores every candidate in one backend call and ranks them.

        A context holding only a session id is completed from the tracked session (an unknown
        session scores with everything missing).
        """
        context = query.context
        if context.only_session_id():
            state = self.sessions.get(context.session_id, deadline)
            if state is not None:
                context = state.to_context()
        model, variant = self.registry.select(context.session_id)
        result = self.score_on(model, variant, query, context, deadline)
        if query.log_impression:
            self._log(result, query, context)
        return result

    def _log(self, result: ScoreResult, query: ScoreQuery, context: SessionContext) -> None:
        """Names the response and queues it in the impression log; the ranked items are the
        slate, shown deterministically (propensity 1)."""
        result.request_id = self.impressions.new_request_id()
        ids = query.candidates.product_ids
        rows = result.rows if result.rows is not None else np.empty((0, 0), np.float32)
        impression = Impression(
            result.request_id, time.time_ns() // 1_000_000, "Score", context.session_id,
            context.customer_id, result.model_version, result.variant or PRIMARY, "greedy",
            False, ids, None, result.scores, rows, result.ranked, np.ones(len(result.ranked)),
        )  # fmt: skip
        self.impressions.record(impression, tuple(ids[i] for i in result.ranked.tolist()) if ids
                                else ())  # fmt: skip

    def score_on(
        self,
        model: LoadedModel,
        variant: str,
        query: ScoreQuery,
        context: SessionContext,
        deadline: float | None = None,
    ) -> ScoreResult:
        """Score against a given model (the one the registry picked, or one being warmed)."""
        validate_score_options(query)
        t0 = time.perf_counter()
        n = len(query.candidates)
        resolved: ResolvedCandidates | None = None
        X: F32 | None = None  # stays None on the native path
        if query.features is not None:
            validate_feature_rows(query.features, model.n_features, self.limits.max_candidates)
            if n and n != query.features.rows:
                raise InvalidArgument(
                    "candidates",
                    n,
                    f"must be empty or label each of the {query.features.rows} feature rows",
                )
            validate_candidates(query.candidates, self.limits.max_candidates)
            X = decode_feature_rows(query.features)
            n = query.features.rows
        else:
            if n == 0:
                raise InvalidArgument(
                    "candidates", 0, "must hold at least one candidate (or send features)"
                )
            validate_candidates(query.candidates, self.limits.max_candidates)
            validate_context(context)
            resolved = resolve_candidates(model, query.candidates, query.skip_unknown)
            if model.kernel is None:
                X = context_features(model, context, resolved.inputs(model))
        t1 = time.perf_counter()
        check_deadline(deadline)
        if X is not None:
            predicted = model.backend.predict(X)
        else:  # native: the rows are built in C, inside the call that scores them
            assert resolved is not None
            predicted = native_scores(model, context, resolved.index, resolved.codes,
                                      resolved.prices)  # fmt: skip
            if query.log_impression:  # the log keeps the rows that were scored
                X = native_rows(model, context, resolved.index, resolved.codes, resolved.prices)
        t2 = time.perf_counter()
        if resolved is not None and resolved.scored_rows is not None:
            scores = np.full(n, np.nan)
            scores[resolved.scored_rows] = predicted
            if query.log_impression and X is not None:  # one row per candidate: NaN if unknown
                every = np.full((n, X.shape[1]), np.nan, np.float32)
                every[resolved.scored_rows] = X
                X = every
        else:
            scores = predicted
        min_score = model.threshold if query.min_score is None else query.min_score
        ranked = rank(scores, min_score, query.top_k)
        t3 = time.perf_counter()
        return ScoreResult(
            scores=scores,
            ranked=ranked,
            model_version=model.version,
            backend=model.backend.name,
            variant=variant,
            unknown_product_ids=resolved.unknown_product_ids if resolved else [],
            stage_seconds={"features": t1 - t0, "predict": t2 - t1, "rank": t3 - t2},
            rows=X,
        )
