"""One open-loop worker process: its own asyncio loop and grpc.aio channels, sending on schedule.

Requests leave at their intended times whether or not earlier ones have been answered; when the
in-flight cap is reached a due request is recorded as DROPPED instead of waiting for a free
slot, so a slow server shows up as latency and drops, never as a quietly lower send rate.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import grpc
import numpy as np
import psutil

from loadtest import latency, workload
from loadtest.latency import Samples
from loadtest.plan import LoadPlan
from loadtest.schedule import intended_times, worker_share
from reco.v1 import recommender_pb2 as pb

logger = logging.getLogger(__name__)

# Shared progress counters, one row of N_COUNTERS per worker (read by the parent's progress line).
SENT, OK, ERRORS, DROPPED, IN_FLIGHT = range(5)
N_COUNTERS = 5

# Distinct prebuilt Score payloads per worker, serialised once so the hot loop does not spend
# client CPU building protobufs.
PREBUILT_SCORE_REQUESTS = 64
CONNECT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0
SESSION_SEED_EVENTS = 2

_SERVICE = "/reco.v1.Recommender/"

Message = tuple[str, int, Any]  # (kind of message, worker index, payload)


@dataclass
class WorkerResult:
    """What a worker hands back: its samples and how much CPU it used while measuring."""

    index: int
    samples: Samples
    cpu_seconds: float  # this process's user+system time during the measured window
    wall_seconds: float  # length of the measured window as this worker saw it
    setup_errors: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_fraction(self) -> float:
        """Share of one core used while measuring (1.0 = one core fully busy)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")


@dataclass(frozen=True)
class _Rpc:
    """One kind of request: how to build its payload and read its answer."""

    method: Callable[..., Awaitable[Any]]
    payload: Callable[[], bytes]
    predictions: int  # rows scored, when known before the answer
    reads_answer: bool  # whether the answer carries server_time_us (and candidates_scored)


def _bytes_in(request: bytes) -> bytes:
    return request


def _method(channel: grpc.aio.Channel, name: str, response: Any) -> Callable[..., Awaitable[Any]]:
    """A Recommender method taking an already serialised request (sent as-is)."""
    return channel.unary_unary(
        _SERVICE + name, request_serializer=_bytes_in, response_deserializer=response.FromString
    )


def _status_value(code: grpc.StatusCode) -> int:
    return int(code.value[0])


class _Worker:
    def __init__(self, plan: LoadPlan, index: int, counters: Any) -> None:
        self.plan = plan
        self.index = index
        self.counters = counters
        self.base = index * N_COUNTERS
        self.rng = np.random.default_rng([plan.seed, index])
        times = worker_share(intended_times(plan.schedule, plan.seed), index, plan.workers)
        self.samples = Samples.allocate(times, plan.mix.draw(self.rng, len(times)))
        self.cap = plan.worker_concurrency(index)
        self.in_flight = 0
        self.start = 0.0
        self.sessions = [f"lt-{plan.run_id}-w{index}-s{i}" for i in range(plan.sessions_per_worker)]
        self.event_ids = itertools.count()
        self.setup_errors: dict[str, int] = {}
        self.unexpected_logged = False

    def _count(self, column: int, delta: int = 1) -> None:
        self.counters[self.base + column] += delta

    def _session(self) -> str:
        return self.sessions[int(self.rng.integers(len(self.sessions)))]

    def _event_id(self) -> str:
        return f"lt-{self.plan.run_id}-w{self.index}-e{next(self.event_ids)}"

    def _track_payload(self) -> bytes:
        request = workload.track_request(
            self.rng, self.plan.products, self._session(), self._event_id()
        )
        return request.SerializeToString()

    def _rpcs(self, channel: grpc.aio.Channel) -> dict[int, _Rpc]:
        """The request kinds of the plan's mix, bound to one channel."""
        plan, rng = self.plan, self.rng

        def cycle(requests: list[bytes]) -> Callable[[], bytes]:
            return itertools.cycle(requests).__next__

        session = f"lt-{plan.run_id}-w{self.index}-ctx"
        score = [
            workload.score_request(rng, plan.products, plan.candidates, session)
            for _ in range(PREBUILT_SCORE_REQUESTS)
        ]
        bad = [
            workload.bad_score_request(rng, plan.products, plan.candidates, session)
            for _ in range(PREBUILT_SCORE_REQUESTS // 4)
        ]
        score_method = _method(channel, "Score", pb.ScoreResponse)
        rpcs = {
            workload.SCORE: _Rpc(
                score_method, cycle([r.SerializeToString() for r in score]), plan.candidates, True
            ),
            workload.SCORE_BAD: _Rpc(
                score_method, cycle([r.SerializeToString() for r in bad]), plan.candidates, True
            ),
            workload.RECOMMEND_SESSION: _Rpc(
                _method(channel, "Recommend", pb.RecommendResponse),
                lambda: workload.recommend_request(self._session()).SerializeToString(),
                0,
                True,
            ),
            workload.TRACK: _Rpc(
                _method(channel, "TrackEvent", pb.TrackEventResponse), self._track_payload, 0, False
            ),
        }
        return {workload.KINDS.index(k): rpcs[k] for k in plan.mix.weights}

    async def _seed_sessions(self, track: Callable[..., Awaitable[Any]]) -> None:
        """Tracks a few views per session before the clock starts, so Recommend finds them."""
        for session in self.sessions:
            for _ in range(SESSION_SEED_EVENTS):
                request = workload.track_request(
                    self.rng, self.plan.products, session, self._event_id(), pb.EVENT_TYPE_VIEW
                )
                try:
                    await track(request.SerializeToString(), timeout=self.plan.timeout_s)
                except grpc.aio.AioRpcError as exc:
                    name = exc.code().name
                    self.setup_errors[name] = self.setup_errors.get(name, 0) + 1

    async def _send(self, row: int, rpc: _Rpc) -> None:
        samples = self.samples
        try:
            payload = rpc.payload()
            samples.sent_s[row] = time.perf_counter() - self.start
            try:
                answer = await rpc.method(payload, timeout=self.plan.timeout_s)
            except grpc.aio.AioRpcError as exc:
                status = _status_value(exc.code())
            except Exception:  # a client-side bug must not stop the run; it is counted
                if not self.unexpected_logged:
                    logger.exception("worker %s: unexpected error sending a request", self.index)
                    self.unexpected_logged = True
                status = _status_value(grpc.StatusCode.UNKNOWN)
            else:
                status = latency.OK
                if rpc.reads_answer:
                    server_us = answer.server_time_us
                    # proto3: 0 means the server did not fill it in.
                    samples.server_us[row] = server_us if server_us > 0 else np.nan
                    scored = getattr(answer, "candidates_scored", 0)
                    samples.predictions[row] = scored or rpc.predictions
                else:
                    samples.predictions[row] = rpc.predictions
            samples.done_s[row] = time.perf_counter() - self.start
            samples.status[row] = status
            self._count(OK if status == latency.OK else ERRORS)
        finally:
            self.in_flight -= 1
            self._count(IN_FLIGHT, -1)

    async def run(
        self, messages: Queue[Message], go: Event, start_at: Synchronized[float]
    ) -> WorkerResult:
        plan = self.plan
        # Separate subchannel pools: several channels really are several TCP connections.
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [
            grpc.aio.insecure_channel(plan.target, options=options) for _ in range(plan.channels)
        ]
        try:
            for channel in channels:
                await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
            per_channel = [self._rpcs(channel) for channel in channels]
            if plan.mix.uses_sessions:
                await self._seed_sessions(_method(channels[0], "TrackEvent", pb.TrackEventResponse))
            messages.put(("ready", self.index, None))
            if not go.wait(START_TIMEOUT_S):
                raise TimeoutError("the parent never gave the start signal")
            return await self._dispatch(per_channel, float(start_at.value))
        finally:
            for channel in channels:
                await channel.close(None)

    async def _dispatch(self, per_channel: list[dict[int, _Rpc]], start: float) -> WorkerResult:
        self.start = start
        process = psutil.Process()
        samples, plan = self.samples, self.plan
        intended, kinds = samples.intended_s, samples.kind
        pending: set[asyncio.Task[None]] = set()
        cpu_mark: tuple[float, float] | None = None
        n = len(samples)
        row = 0
        while row < n:
            now = time.perf_counter() - start
            due = intended[row]
            if due > now:
                await asyncio.sleep(due - now)
                continue
            if cpu_mark is None and due >= plan.schedule.warmup_s:
                cpu_mark = (_cpu_seconds(process), time.perf_counter())
            # Everything due by now goes out at once: a late loop catches up, it never skips.
            while row < n and intended[row] <= now:
                if self.in_flight >= self.cap:
                    samples.status[row] = latency.DROPPED
                    self._count(DROPPED)
                else:
                    rpc = per_channel[row % len(per_channel)][int(kinds[row])]
                    self.in_flight += 1
                    self._count(SENT)
                    self._count(IN_FLIGHT)
                    task = asyncio.create_task(self._send(row, rpc))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                row += 1
        if pending:
            await asyncio.gather(*pending)
        if cpu_mark is None:  # nothing was scheduled after the warm-up
            cpu_mark = (_cpu_seconds(process), time.perf_counter())
        return WorkerResult(
            index=self.index,
            samples=samples,
            cpu_seconds=_cpu_seconds(process) - cpu_mark[0],
            wall_seconds=time.perf_counter() - cpu_mark[1],
            setup_errors=self.setup_errors,
        )


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_worker(
    plan: LoadPlan,
    index: int,
    counters: Any,
    messages: Queue[Message],
    go: Event,
    start_at: Synchronized[float],
) -> None:
    """Process entry point: runs the worker and puts ("done", index, WorkerResult) on messages.

    On failure it puts ("failed", index, message) instead. Ctrl-C is left to the parent, which
    stops the workers itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = asyncio.run(_Worker(plan, index, counters).run(messages, go, start_at))
    except Exception as exc:
        messages.put(("failed", index, f"{type(exc).__name__}: {exc}"))
        return
    messages.put(("done", index, result))
