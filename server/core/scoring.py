"""Score: one context and a batch of candidates -> features -> one backend call -> ranking."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reco import NO_PRODUCT, CandidateInputs, SessionContext
from server.core.errors import DeadlineExceeded, InvalidArgument, NotFound, echo
from server.core.model import LoadedModel
from server.core.ranking import rank
from server.core.registry import ModelRegistry
from server.core.requests import Candidates, FeatureRows, ScoreQuery, ScoreResult
from server.core.sessions import SessionStore
from server.core.validation import (
    validate_candidates,
    validate_context,
    validate_feature_rows,
    validate_score_options,
)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Limits:
    """Request size limits (the message-size limit is set on the transport)."""

    max_candidates: int = 1000


@dataclass(frozen=True)
class ResolvedCandidates:
    """Candidate inputs for the rows to score, and what could not be scored."""

    inputs: CandidateInputs
    scored_rows: npt.NDArray[np.int64] | None  # None = every candidate is scored
    unknown_product_ids: list[str]


def check_deadline(deadline: float | None) -> None:
    """Abandons the work once the caller's deadline (time.monotonic() seconds) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("deadline exceeded; the request was abandoned")


def resolve_candidates(
    model: LoadedModel, candidates: Candidates, skip_unknown: bool
) -> ResolvedCandidates:
    """Catalog lookups for id-only candidates, overrides applied, unknown products handled.

    An unknown product can still be scored when the request gives its category and price.
    """
    get = model.catalog.index.get
    found = [get(pid, NO_PRODUCT) for pid in candidates.product_ids]
    index = np.array(found, dtype=np.int64)
    codes = model.product_category_codes[index]
    prices = model.product_prices[index]
    if not (candidates.categories or candidates.prices) and NO_PRODUCT not in found:
        return ResolvedCandidates(CandidateInputs(codes, prices, index), None, [])
    code_of = model.encodings.category.code
    for i, category in candidates.categories.items():
        codes[i] = code_of(category)
    for i, price in candidates.prices.items():
        prices[i] = price
    # Only unknown products can lack a category or price after the overrides.
    unscorable = np.isnan(codes) | np.isnan(prices)
    if not unscorable.any():
        return ResolvedCandidates(CandidateInputs(codes, prices, index), None, [])
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
    inputs = CandidateInputs(codes[rows], prices[rows], index[rows])
    return ResolvedCandidates(inputs, rows, unknown_ids)


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

    def __init__(self, registry: ModelRegistry, limits: Limits, sessions: SessionStore) -> None:
        self.registry = registry
        self.limits = limits
        self.sessions = sessions

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
        return self.score_on(model, variant, query, context, deadline)

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
            X = context_features(model, context, resolved.inputs)
        t1 = time.perf_counter()
        check_deadline(deadline)
        predicted = model.backend.predict(X)
        t2 = time.perf_counter()
        if resolved is not None and resolved.scored_rows is not None:
            scores = np.full(n, np.nan)
            scores[resolved.scored_rows] = predicted
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
        )
