"""Admission against real servers: cancelled calls never leak a slot, idle streams never starve
unary calls, and health says NOT_SERVING while the server cannot admit work."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.memory_store import MemoryStore
from server.core.sessions import Event, SessionState, Tracked
from tests.integration.churn import cancel_storm, score_request, unary_after
from tests.integration.servers import InProcessServer, ServerProcess, running

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def in_flight(srv: ServerProcess) -> dict[str, float]:
    """reco_in_flight_requests by kind, from /metrics."""
    url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("reco_in_flight_requests{"):
            kind = line.split('kind="')[1].split('"')[0]
            values[kind] = float(line.rsplit(" ", 1)[1])
    return values


def wait_until_free(srv: ServerProcess, timeout: float = 20.0) -> dict[str, float]:
    """Polls the gauge until no slot is held (cancellations reach the server asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        values = in_flight(srv)
        if values and all(v == 0 for v in values.values()):
            return values
        if time.monotonic() > deadline:
            return values
        time.sleep(0.05)  # polling a gauge, not waiting for a server to start


class IdleStreams:
    """`count` ScoreStream calls, each answered once and then left open and idle."""

    def __init__(self, stub: pb_grpc.RecommenderStub, count: int) -> None:
        # Keep every call object: grpc cancels a call whose object is garbage-collected.
        self.calls: list[
            tuple[queue.Queue[pb.ScoreRequest | None], Iterator[pb.ScoreResponse]]
        ] = []
        for _ in range(count):
            feed: queue.Queue[pb.ScoreRequest | None] = queue.Queue()
            responses = stub.ScoreStream(iter(feed.get, None))
            feed.put(score_request(3))
            next(responses)  # open and answering
            self.calls.append((feed, responses))

    def close(self) -> None:
        """Half-closes every stream and reads it to its end."""
        for feed, responses in self.calls:
            feed.put(None)
            list(responses)


def test_thousands_of_cancelled_calls_leave_every_slot_free(bundle: Path, logs: Path) -> None:
    streams, unary = 16, 8
    # No shedding by queueing time: every call of the storm goes through admission.
    flags = (
        "--max-open-streams",
        str(streams),
        "--max-in-flight",
        str(unary),
        "--max-queue-ms",
        "0",
    )
    with running(bundle, *flags, log_dir=logs) as srv:
        outcomes = asyncio.run(cancel_storm(srv.target, calls=2000, seed=9))
        left = wait_until_free(srv)
        after = unary_after(srv.target)
        stub = pb_grpc.RecommenderStub(srv.channel())
        # A bounded probe: every stream slot can be held at once again, and one more is refused.
        idle = IdleStreams(stub, streams)
        with pytest.raises(grpc.RpcError) as extra:
            next(stub.ScoreStream(iter([score_request(3)])))
        idle.close()
        log = srv.log()
    assert left == {"unary": 0.0, "stream": 0.0}, (left, outcomes)
    assert after == {"OK": 100}, f"after 2,000 cancelled streams and calls: {after}"
    assert extra.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"limit of {streams} open streams" in extra.value.details()
    assert "Traceback" not in log


def test_idle_streams_beyond_their_budget_never_starve_unary_calls(
    bundle: Path, logs: Path
) -> None:
    flags = ("--max-open-streams", "8", "--max-in-flight", "8")
    with running(bundle, *flags, log_dir=logs) as srv:
        stub = pb_grpc.RecommenderStub(srv.channel())
        idle = IdleStreams(stub, 8)
        refused = []
        for _ in range(4):  # more idle streams than the stream budget
            with pytest.raises(grpc.RpcError) as err:
                next(stub.ScoreStream(iter([score_request(3)])))
            refused.append((err.value.code(), err.value.details()))
        answered = [len(stub.Score(score_request(), timeout=10).scores) for _ in range(100)]
        gauge = in_flight(srv)
        idle.close()
    assert all(code == grpc.StatusCode.RESOURCE_EXHAUSTED for code, _ in refused)
    assert all("limit of 8 open streams" in details for _, details in refused)
    assert answered == [20] * 100
    assert gauge["stream"] == 8 and gauge["unary"] == 0


class HealthLog:
    """Every status one Watch stream reports, collected on a thread."""

    def __init__(self, target: str) -> None:
        self.seen: list[int] = []
        self._changed = threading.Condition()
        self._channel = grpc.insecure_channel(target)
        self._call = health_pb2_grpc.HealthStub(self._channel).Watch(
            health_pb2.HealthCheckRequest(service="")
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        try:
            for reply in self._call:
                with self._changed:
                    self.seen.append(reply.status)
                    self._changed.notify_all()
        except grpc.RpcError:
            pass

    def wait_for(self, *sequence: int, timeout: float = 30.0) -> list[int]:
        """Blocks until `sequence` appears, in order, among the statuses seen."""

        def found() -> bool:
            it = iter(self.seen)
            return all(any(s == want for s in it) for want in sequence)

        with self._changed:
            self._changed.wait_for(found, timeout)
            return list(self.seen)

    def close(self) -> None:
        self._call.cancel()
        self._channel.close()


@pytest.fixture
def health_log() -> Iterator[list[HealthLog]]:
    logs: list[HealthLog] = []
    yield logs
    for log in logs:
        log.close()


class HangingStore:
    """A remote-looking store whose writes hang until released (a stuck dependency)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.limits = self.inner.limits
        self.release = threading.Event()

    def track(self, event: Event, deadline: float | None = None) -> Tracked:
        self.release.wait(60)
        return self.inner.track(event, deadline)

    def get(self, session_id: str, deadline: float | None = None) -> SessionState | None:
        return self.inner.get(session_id, deadline)

    def forget(self, session_id: str, deadline: float | None = None) -> bool:
        return self.inner.forget(session_id, deadline)

    def describe(self) -> str:
        return "a store whose writes hang"


def track_request(n: int) -> pb.TrackEventRequest:
    return pb.TrackEventRequest(event=pb.Event(event_id=f"e{n}", session_id="stuck",
                                               type=pb.EVENT_TYPE_VIEW, product_id="PROD0001"))  # fmt: skip


def test_health_is_not_serving_while_the_unary_budget_is_pinned(
    bundle: Path, health_log: list[HealthLog]
) -> None:
    store = HangingStore()
    srv = InProcessServer(bundle, "--max-in-flight", "2", "--stall-seconds", "0.5")
    srv.app.store = srv.app.handlers.store = store  # type: ignore[assignment]
    with srv, srv.channel() as channel:
        health = HealthLog(srv.target)
        health_log.append(health)
        stub = pb_grpc.RecommenderStub(channel)
        stuck = [stub.TrackEvent.future(track_request(n), timeout=60) for n in range(2)]
        seen = health.wait_for(SERVING, NOT_SERVING)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Score(score_request(), timeout=10)
        store.release.set()
        results = [f.result() for f in stuck]
        seen = health.wait_for(SERVING, NOT_SERVING, SERVING)
        answered = stub.Score(score_request(), timeout=10)
    assert seen[-3:] == [SERVING, NOT_SERVING, SERVING]
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 2 requests in flight" in refused.value.details()
    assert [r.session.session_id for r in results] == ["stuck", "stuck"]
    assert len(answered.scores) == 20
    assert srv.metric("reco_in_flight_requests", kind="unary") == 0


def test_health_is_not_serving_after_the_event_loop_stalls(
    bundle: Path, health_log: list[HealthLog]
) -> None:
    srv = InProcessServer(bundle, "--stall-seconds", "0.5")
    real_score = srv.app.handlers.score
    stalls = [1.5]

    def stalling_score(*args: object, **kwargs: object) -> pb.ScoreResponse:
        if stalls:
            time.sleep(stalls.pop())  # blocks the event loop, as a runaway handler would
        return real_score(*args, **kwargs)  # type: ignore[arg-type]

    srv.app.handlers.score = stalling_score  # type: ignore[method-assign]
    with srv, srv.channel() as channel:
        health = HealthLog(srv.target)
        health_log.append(health)
        health.wait_for(SERVING)
        pb_grpc.RecommenderStub(channel).Score(score_request(), timeout=30)
        seen = health.wait_for(SERVING, NOT_SERVING, SERVING)
    assert seen[-3:] == [SERVING, NOT_SERVING, SERVING]
    lag = srv.metric("reco_event_loop_lag_seconds")
    assert lag is not None and lag < 0.5  # recovered: the loop runs on time again


def test_calls_that_expire_while_queued_are_counted_not_served(bundle: Path) -> None:
    srv = InProcessServer(bundle, "--max-queue-ms", "0")
    real_score = srv.app.handlers.score
    stalled = threading.Event()

    def score(
        request: pb.ScoreRequest, deadline: float | None, rpc: str = "Score"
    ) -> pb.ScoreResponse:
        if not stalled.is_set():
            stalled.set()
            time.sleep(1.0)  # the loop takes nothing from gRPC's queue meanwhile
        return real_score(request, deadline, rpc)

    srv.app.handlers.score = score  # type: ignore[method-assign]
    with srv, srv.channel() as channel:
        stub = pb_grpc.RecommenderStub(channel)
        blocker = stub.Score.future(score_request(), timeout=30)
        assert stalled.wait(30)
        queued = [stub.Score.future(score_request(), timeout=0.2) for _ in range(20)]
        codes = [f.exception().code() if f.exception() else grpc.StatusCode.OK for f in queued]
        blocker.result()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the counts land as the server catches up
            counted = sum(
                srv.metric("reco_cancelled_calls_total", stage=stage) or 0.0
                for stage in ("core", "dispatch")
            )
            if counted >= 20:
                break
            time.sleep(0.05)
        scored = srv.metric("reco_stage_seconds_count", rpc="Score", stage="predict")
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 20
    assert counted >= 20
    assert scored is not None and scored < 21  # the expired calls were never scored
