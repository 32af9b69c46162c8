"""Clean errors from ordinary mistakes: undecodable bytes, huge values, bad events in a stream,
a store outage mid-stream, a catalog limit below the retrieval size."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.errors import Unavailable
from server.core.memory_store import MemoryStore
from server.core.sessions import Event, Tracked
from tests.integration.servers import InProcessServer, ServerProcess, running

# Event times must lie within the server's accepted window (a day back, minutes ahead).
T0_MS = time.time_ns() // 1_000_000 - 60_000
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a truncated varint: no protobuf message parses it


def metrics_text(srv: ServerProcess) -> str:
    url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


def metrics_with(srv: ServerProcess, line: str, timeout: float = 10.0) -> str:
    """The metrics text once it holds `line`: a stream's status reaches the client before the
    server's handler has finished counting it, so the count may land a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        text = metrics_text(srv)
        if line in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)  # polling a counter, not waiting for a server to start


def raw_unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    """A unary method that sends bytes as they are."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def view(n: int, session: str = "stream", **fields: object) -> pb.TrackEventRequest:
    event = pb.Event(event_id=f"{session}-{n}", session_id=session, type=pb.EVENT_TYPE_VIEW,
                     product_id=f"PROD{n + 1:04d}", **fields)  # type: ignore[arg-type]  # fmt: skip
    event.client_timestamp.FromMilliseconds(T0_MS + n * 1000)
    return pb.TrackEventRequest(event=event)


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with server.channel() as ch:
        yield ch


def test_undecodable_bytes_are_invalid_argument_counted_and_not_logged(
    server: ServerProcess, channel: grpc.Channel
) -> None:
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            raw_unary(channel, "/reco.v1.Recommender/Score")(GARBAGE, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "malformed request"
    with pytest.raises(grpc.RpcError) as health:
        raw_unary(channel, "/grpc.health.v1.Health/Check")(GARBAGE, timeout=10)
    assert health.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'reco_malformed_requests_total{rpc="Score"} 3.0' in metrics_text(server)
    log = server.log()
    assert "DecodeError" not in log and "Traceback" not in log


def test_a_1_mb_unknown_id_gets_a_short_status(channel: grpc.Channel) -> None:
    huge = "P" * (1 << 20)
    stub = pb_grpc.RecommenderStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(pb.ScoreRequest(context=pb.SessionContext(current_product_id="PROD0001"),
                                   candidate_ids=["PROD0002", huge]), timeout=10)  # fmt: skip
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    details = err.value.details()
    assert len(details) < 300 and "(1048576 characters)" in details
    assert details.startswith("candidate_ids[1] 'PPPP")


def test_stream_events_rejects_bad_events_one_by_one_and_keeps_the_good_ones(
    server: ServerProcess, channel: grpc.Channel
) -> None:
    far_future = view(3)
    far_future.event.client_timestamp.seconds = 1 << 62  # beyond protobuf's year 9999
    messages = [
        view(0).SerializeToString(),
        GARBAGE,
        view(2, scroll_depth=2.0).SerializeToString(),
        far_future.SerializeToString(),
        view(0).SerializeToString(),  # a duplicate of the first
        view(5).SerializeToString(),
    ]
    stream_events = channel.stream_unary(
        "/reco.v1.Recommender/StreamEvents",
        request_serializer=None,
        response_deserializer=pb.StreamEventsResponse.FromString,
    )
    summary = stream_events(iter(messages), timeout=10)
    assert (summary.accepted, summary.duplicates, summary.rejected) == (2, 1, 3)
    errors = {e.index: e.message for e in summary.errors}
    assert errors[1] == "malformed request"
    assert errors[2].startswith("events[2].scroll_depth must be between 0 and 1")
    assert errors[3].startswith("events[3].client_timestamp must be a valid timestamp")
    session = pb_grpc.RecommenderStub(channel).TrackEvent(view(6), timeout=10).session
    assert session.events_applied == 3  # events 0, 5 and 6
    assert "Traceback" not in server.log()


class FailingStore(MemoryStore):
    """Stores `healthy` events, then fails as an unreachable store does."""

    def __init__(self, healthy: int) -> None:
        super().__init__()
        self.healthy = healthy

    def track(self, event: Event, deadline: float | None = None) -> Tracked:
        if self.healthy == 0:
            raise Unavailable("session store is unreachable")
        self.healthy -= 1
        return super().track(event, deadline)


def test_a_store_outage_mid_stream_says_how_many_events_were_stored(bundle: Path) -> None:
    srv = InProcessServer(bundle)
    srv.app.handlers.store = FailingStore(healthy=3)
    with srv, srv.channel() as ch:
        stub = pb_grpc.RecommenderStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.StreamEvents(iter([view(0), view(1, scroll_depth=-1.0), view(2), view(0),
                                    view(4), view(5), view(6)]), timeout=10)  # fmt: skip
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == (
        "session store is unreachable; events [0, 4) were handled (accepted 2, duplicates 1, "
        "rejected 1), resend from events[4]"
    )


def test_a_bad_message_ends_score_stream_naming_its_index(
    server: ServerProcess, channel: grpc.Channel
) -> None:
    good = pb.ScoreRequest(context=pb.SessionContext(current_product_id="PROD0001"),
                           candidate_ids=["PROD0002"]).SerializeToString()  # fmt: skip
    score_stream = channel.stream_stream(
        "/reco.v1.Recommender/ScoreStream", request_serializer=None, response_deserializer=None
    )
    responses = score_stream(iter([good, good, GARBAGE, good]), timeout=10)
    answered = 0
    with pytest.raises(grpc.RpcError) as err:
        for _ in responses:
            answered += 1
    assert answered == 2
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "request 2: malformed request"
    counted = 'reco_requests_total{code="INVALID_ARGUMENT",rpc="ScoreStream"}'
    assert counted in metrics_with(server, counted)


@pytest.mark.parametrize(
    ("flags", "scored"),
    [
        # On main, --catalog-limit 10 (retrieval size 300 above a pool of about 190 products)
        # was INTERNAL on every call; such a pair is now refused at start (test_server_settings),
        # and the smallest limits the settings accept retrieve exactly what they say.
        (("--catalog-limit", "100", "--retrieval-size", "100"), 100),
        (("--catalog-limit", "150", "--retrieval-size", "120"), 120),
    ],
)
def test_any_catalog_limit_serves_recommend(bundle: Path, logs: Path, flags: tuple[str, ...],
                                            scored: int) -> None:  # fmt: skip
    with running(bundle, *flags, log_dir=logs) as srv, srv.channel() as ch:
        stub = pb_grpc.RecommenderStub(ch)
        stub.TrackEvent(view(0, session="limit"), timeout=10)
        answer = stub.Recommend(pb.RecommendRequest(session_id="limit", k=5, min_score=0.0),
                                timeout=10)  # fmt: skip
    assert not answer.cold_start and len(answer.items) == min(5, scored)
    assert answer.candidates_scored == scored
