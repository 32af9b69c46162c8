"""Protobuf messages to core request types and core results back to protobuf messages."""

from __future__ import annotations

from operator import attrgetter

from google.protobuf import timestamp_pb2

from reco import SessionContext
from reco.v1 import recommender_pb2 as pb
from server.core.errors import InvalidArgument
from server.core.recommend import Recommendation, RecommendQuery
from server.core.requests import Candidates, FeatureRows, ScoreQuery, ScoreResult
from server.core.sessions import Event, EventType, SessionState

_product_id = attrgetter("product_id")

# An id-only Candidate inside a ScoreRequest takes at least tag(1) + length(1) + [tag(1) +
# length(1) + id] bytes (exactly that for an ASCII id under 126 bytes); an empty id takes 2.
_ID_ONLY_OVERHEAD = 4


def _varint_size(value: int) -> int:
    if value < 0:
        return 10  # negative int32/int64 are sign-extended to 64 bits
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _non_candidate_size(request: pb.ScoreRequest) -> int:
    """Serialized size of every ScoreRequest field except candidates.

    A field missing here only makes requests look larger than id-only, which takes the exact
    (slower) decoding path: never a wrong result.
    """
    size = 0
    if request.HasField("context"):
        n = request.context.ByteSize()
        size += 1 + _varint_size(n) + n
    if request.top_k:
        size += 1 + _varint_size(request.top_k)
    if request.HasField("min_score"):
        size += 1 + 4
    if request.HasField("features"):
        n = request.features.ByteSize()
        size += 1 + _varint_size(n) + n
    if request.skip_unknown:
        size += 2
    for product_id in request.candidate_ids:
        size += 1 + _varint_size(len(product_id.encode())) + len(product_id.encode())
    return size


def _all_candidates_id_only(request: pb.ScoreRequest, ids: list[str]) -> bool:
    """True when no candidate carries a category or price, decided without visiting each one.

    Each candidate's encoding is at least 4 + len(id) bytes (2 for an empty id), with equality
    only for an ASCII id under 126 bytes and no category or price; so the request's size equals
    that lower bound summed over its candidates exactly when none has an override (anything
    else, a non-ASCII or long id included, takes the exact path). Reading two fields of 100
    candidate messages costs about 25 us with upb; this check about 5 us.
    """
    id_only = sum(map(len, ids)) + _ID_ONLY_OVERHEAD * len(ids) - 2 * ids.count("")
    return request.ByteSize() == _non_candidate_size(request) + id_only


def candidates_from_proto(request: pb.ScoreRequest) -> Candidates:
    """The request's candidates as columns, with sparse category/price overrides."""
    if request.candidate_ids:
        if request.candidates:
            raise InvalidArgument(
                "candidate_ids", len(request.candidate_ids), "must not be combined with candidates"
            )
        return Candidates(list(request.candidate_ids), field="candidate_ids")
    candidates = request.candidates
    ids = list(map(_product_id, candidates))
    if _all_candidates_id_only(request, ids):
        return Candidates(ids)
    categories: dict[int, str] = {}
    prices: dict[int, float] = {}
    for i, candidate in enumerate(candidates):
        if candidate.HasField("category"):
            categories[i] = candidate.category
        if candidate.HasField("price"):
            prices[i] = candidate.price
    return Candidates(ids, categories, prices)


def context_from_proto(message: pb.SessionContext) -> SessionContext:
    """A pb.SessionContext as the one session context type (reco.SessionContext); unset
    optional fields become None."""
    has = message.HasField
    return SessionContext(
        session_id=message.session_id,
        customer_id=message.customer_id,
        current_product_id=message.current_product_id,
        current_category=message.current_category if has("current_category") else None,
        current_price=message.current_price if has("current_price") else None,
        previous_product_ids=tuple(message.previous_product_ids),
        products_in_cart=message.products_in_cart if has("products_in_cart") else None,
        device_type=message.device_type or None,
        traffic_source=message.traffic_source or None,
        time_on_page_sec=message.time_on_page_sec if has("time_on_page_sec") else None,
        scroll_depth=message.scroll_depth if has("scroll_depth") else None,
        clicked_product_image=(
            message.clicked_product_image if has("clicked_product_image") else None
        ),
        session_length_mins=message.session_length_mins if has("session_length_mins") else None,
        products_viewed_count=(
            message.products_viewed_count if has("products_viewed_count") else None
        ),
    )


def score_query_from_proto(request: pb.ScoreRequest) -> ScoreQuery:
    """A ScoreRequest as the core's ScoreQuery."""
    features = None
    if request.HasField("features"):
        f = request.features
        features = FeatureRows(data=f.data, rows=f.rows, cols=f.cols)
    return ScoreQuery(
        context=context_from_proto(request.context),
        candidates=candidates_from_proto(request),
        top_k=request.top_k,
        min_score=request.min_score if request.HasField("min_score") else None,
        features=features,
        skip_unknown=request.skip_unknown,
    )


def score_response(result: ScoreResult, product_ids: list[str]) -> pb.ScoreResponse:
    """The ScoreResponse for a result; ranked items are built only for the kept candidates."""
    scores = result.scores.tolist()
    response = pb.ScoreResponse(
        scores=scores,
        model_version=result.model_version,
        backend=result.backend,
        variant=result.variant,
        unknown_product_ids=result.unknown_product_ids,
    )
    ranked = response.ranked
    for rank, index in enumerate(result.ranked.tolist(), 1):
        # add() then attribute writes is about twice as fast as add(**kwargs) with upb.
        item = ranked.add()
        item.product_id = product_ids[index] if product_ids else ""
        item.score = scores[index]
        item.rank = rank
        item.index = index
    return response


# -- Sessions and Recommend ------------------------------------------------------------------

_EVENT_TYPES = {
    pb.EVENT_TYPE_VIEW: EventType.VIEW,
    pb.EVENT_TYPE_ADD_TO_CART: EventType.ADD_TO_CART,
    pb.EVENT_TYPE_REMOVE_FROM_CART: EventType.REMOVE_FROM_CART,
    pb.EVENT_TYPE_PURCHASE: EventType.PURCHASE,
    pb.EVENT_TYPE_IMAGE_CLICK: EventType.IMAGE_CLICK,
    pb.EVENT_TYPE_SCROLL: EventType.SCROLL,
}


def event_from_proto(message: pb.Event, received_ms: int, prefix: str = "event") -> Event:
    """An Event message as the core's Event; no client timestamp = the server's receive time."""
    kind = _EVENT_TYPES.get(message.type)
    if kind is None:
        allowed = ", ".join(pb.EventType.Name(t) for t in _EVENT_TYPES)
        name = (
            pb.EventType.Name(message.type)
            if message.type in pb.EventType.values()
            else message.type
        )
        raise InvalidArgument(f"{prefix}.type", name, f"must be one of {allowed}")
    has = message.HasField
    return Event(
        event_id=message.event_id,
        session_id=message.session_id,
        type=kind,
        timestamp_ms=_milliseconds(message.client_timestamp, f"{prefix}.client_timestamp")
        if has("client_timestamp")
        else received_ms,
        product_id=message.product_id,
        customer_id=message.customer_id,
        time_on_page_sec=message.time_on_page_sec if has("time_on_page_sec") else None,
        scroll_depth=message.scroll_depth if has("scroll_depth") else None,
        device_type=message.device_type,
        traffic_source=message.traffic_source,
    )


def _milliseconds(timestamp: timestamp_pb2.Timestamp, field: str) -> int:
    """A Timestamp in ms since 1970; one outside protobuf's range (years 1-9999, nanos within a
    second) is InvalidArgument naming the field, not a ValueError."""
    try:
        return timestamp.ToMilliseconds()
    except ValueError:
        shown = f"{{seconds: {timestamp.seconds}, nanos: {timestamp.nanos}}}"
        raise InvalidArgument(
            field, shown, "must be a valid timestamp (years 1 to 9999, nanos 0 to 999,999,999)"
        ) from None


def session_summary(state: SessionState) -> pb.SessionSummary:
    """The session as the model sees it after an event."""
    return pb.SessionSummary(
        session_id=state.session_id,
        current_product_id=state.current_product_id,
        previous_product_ids=state.previous_product_ids,
        cart_product_ids=state.cart,
        products_viewed_count=state.products_viewed_count,
        session_length_mins=state.session_length_mins,
        events_applied=state.events_applied,
    )


def recommend_query_from_proto(request: pb.RecommendRequest) -> RecommendQuery:
    """A RecommendRequest as the core's RecommendQuery."""
    return RecommendQuery(
        session_id=request.session_id,
        k=request.k,
        min_score=request.min_score if request.HasField("min_score") else None,
        exclude_product_ids=tuple(request.exclude_product_ids),
        explain=request.explain,
        max_per_category=request.max_per_category,
    )


def recommend_response(result: Recommendation) -> pb.RecommendResponse:
    """The RecommendResponse for a recommendation."""
    response = pb.RecommendResponse(
        cold_start=result.cold_start,
        model_version=result.model_version,
        variant=result.variant,
        backend=result.backend,
        candidates_scored=result.candidates_scored,
    )
    for item in result.items:
        out = response.items.add(
            product_id=item.product_id, name=item.name, category=item.category,
            subcategory=item.subcategory, price=item.price, score=item.score, reasons=item.reasons,
        )  # fmt: skip
        for c in item.contributions:
            out.contributions.add(feature=c.feature, value=c.value, contribution=c.contribution)
    return response
