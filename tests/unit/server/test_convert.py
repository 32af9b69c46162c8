"""Protobuf <-> core conversion, including the id-only fast path for candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reco import SessionContext
from reco.v1 import recommender_pb2 as pb
from server.core.errors import InvalidArgument
from server.core.requests import Candidates, ScoreResult
from server.transport.convert import (
    candidates_from_proto,
    context_from_proto,
    event_from_proto,
    score_query_from_proto,
    score_response,
)


def exact_candidates(request: pb.ScoreRequest) -> Candidates:
    """The obvious decoding, field by field."""
    ids = [c.product_id for c in request.candidates]
    categories = {i: c.category for i, c in enumerate(request.candidates) if c.HasField("category")}
    prices = {i: c.price for i, c in enumerate(request.candidates) if c.HasField("price")}
    return Candidates(ids, categories, prices)


product_ids = st.one_of(
    st.text(alphabet="PROD0123456789", min_size=0, max_size=12),
    st.text(min_size=0, max_size=3),  # non-ASCII and empty ids take the exact path
    st.text(alphabet="x", min_size=120, max_size=140),  # long ids cross the 1-byte varint limit
)
candidate = st.builds(
    lambda pid, category, price: (pid, category, price),
    product_ids,
    st.one_of(st.none(), st.text(max_size=8)),
    st.one_of(st.none(), st.floats(width=32, allow_nan=True)),
)


@settings(max_examples=400, deadline=None)
@given(
    candidates=st.lists(candidate, max_size=30),
    top_k=st.integers(-5, 2000),
    min_score=st.one_of(st.none(), st.floats(0, 1, width=32)),
    with_context=st.booleans(),
    with_features=st.booleans(),
    skip_unknown=st.booleans(),
)
def test_fast_candidate_decoding_equals_the_exact_one(
    candidates: list[tuple[str, str | None, float | None]],
    top_k: int,
    min_score: float | None,
    with_context: bool,
    with_features: bool,
    skip_unknown: bool,
) -> None:
    request = pb.ScoreRequest(top_k=top_k, skip_unknown=skip_unknown)
    if min_score is not None:
        request.min_score = min_score
    if with_context:
        request.context.session_id = "s-1"
        request.context.scroll_depth = 0.5
    if with_features:
        request.features.rows = 1
        request.features.cols = 27
        request.features.data = b"\0" * 108
    for pid, category, price in candidates:
        c = request.candidates.add(product_id=pid)
        if category is not None:
            c.category = category
        if price is not None:
            c.price = price
    request = pb.ScoreRequest.FromString(request.SerializeToString())
    got = candidates_from_proto(request)
    want = exact_candidates(request)
    assert got.product_ids == want.product_ids
    assert got.categories == want.categories
    assert got.prices.keys() == want.prices.keys()
    for i, price in want.prices.items():
        assert got.prices[i] == price or (math.isnan(got.prices[i]) and math.isnan(price))


def test_unset_context_fields_are_none_and_set_zeros_are_kept() -> None:
    message = pb.SessionContext(session_id="s", products_in_cart=0, scroll_depth=0.0)
    context = context_from_proto(message)
    assert context.products_in_cart == 0 and context.scroll_depth == 0.0
    assert context.current_price is None and context.time_on_page_sec is None
    assert context.device_type is None  # "" means not given
    assert context.only_session_id() is False
    assert context_from_proto(pb.SessionContext(session_id="s")).only_session_id()


def test_score_query_carries_features_and_threshold() -> None:
    request = pb.ScoreRequest(
        features=pb.FeatureMatrix(data=b"\0" * 8, rows=1, cols=2), min_score=0.25, top_k=3
    )
    query = score_query_from_proto(request)
    assert query.features is not None and query.features.rows == 1
    assert query.min_score == 0.25 and query.top_k == 3
    assert query.context == SessionContext()
    assert score_query_from_proto(pb.ScoreRequest()).min_score is None


def test_score_response_lists_ranked_items_in_order_with_their_request_index() -> None:
    result = ScoreResult(
        scores=np.array([0.2, 0.9, 0.8]),
        ranked=np.array([1, 2]),
        model_version="v1",
        backend="compiled",
        variant="",
        unknown_product_ids=[],
        stage_seconds={},
    )
    response = score_response(result, ["a", "b", "c"])
    assert list(response.scores) == [0.2, 0.9, 0.8]
    assert [(r.product_id, r.rank, r.index, r.score) for r in response.ranked] == [
        ("b", 1, 1, 0.9),
        ("c", 2, 2, 0.8),
    ]
    assert response.model_version == "v1" and response.backend == "compiled"


def test_candidate_ids_is_the_packed_id_only_form() -> None:
    request = pb.ScoreRequest(candidate_ids=["P1", "P2", "P1"])
    assert candidates_from_proto(request) == Candidates(["P1", "P2", "P1"], field="candidate_ids")


def test_candidate_ids_and_candidates_together_are_refused() -> None:
    import pytest

    from server.core.errors import InvalidArgument

    request = pb.ScoreRequest(candidate_ids=["P1"], candidates=[pb.Candidate(product_id="P2")])
    with pytest.raises(
        InvalidArgument, match=r"candidate_ids must not be combined with candidates"
    ):
        candidates_from_proto(request)


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(10**12, 0), (-(10**12), 0), (1_800_000_000, -5), (1, 10**9)]
)
def test_a_timestamp_outside_protobufs_range_is_invalid_argument_naming_the_field(
    seconds: int, nanos: int
) -> None:
    """main: ToMilliseconds raised ValueError, answered as INTERNAL."""
    message = pb.Event(event_id="e", session_id="s", type=pb.EVENT_TYPE_VIEW, product_id="P")
    message.client_timestamp.seconds, message.client_timestamp.nanos = seconds, nanos
    with pytest.raises(InvalidArgument) as refused:
        event_from_proto(message, 0, prefix="events[2]")
    assert str(refused.value).startswith(
        "events[2].client_timestamp must be a valid timestamp (years 1 to 9999"
    )
    assert f"seconds: {seconds}" in str(refused.value)
