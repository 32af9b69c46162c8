"""The ceiling side by side (`python -m loadtest.serverbench --ceiling`): one raw-bytes client
driving this server, a bare model-call handler and a bare echo (server/ceiling.py) on the same
bundle, in interleaved rounds, and ScoreStream against unary Score on one connection.

Every target gets the same client: pre-serialised requests sent as bytes with a fixed number
in flight, responses kept as bytes (parsed after the clock stops, for server_time_us), and the
server process's CPU time (user + system, every thread) read around each run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import psutil
from google.protobuf.message import DecodeError

from reco.v1 import recommender_pb2 as pb

SCORE = "/reco.v1.Recommender/Score"
SCORE_STREAM = "/reco.v1.Recommender/ScoreStream"
IN_FLIGHT = 16
WARM_UP_CALLS = 200


@dataclass
class Run:
    """One measured run against one target: each call's round trip (us) and answer bytes."""

    calls: list[tuple[float, bytes]] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def round_trip_us(self) -> list[float]:
        return [us for us, _ in self.calls]

    @property
    def rate(self) -> float:
        """Calls (or stream messages) per second."""
        return len(self.calls) / self.seconds

    @property
    def cpu_per_call_us(self) -> float:
        """Server CPU time per call."""
        return self.server_cpu_s / len(self.calls) * 1e6

    def server_time_us(self) -> np.ndarray:
        """server_time_us of every response that carries one (this server's; the echo's
        answers are requests, the ceiling's carry none)."""
        try:
            times = [pb.ScoreResponse.FromString(r).server_time_us for _, r in self.calls]
        except DecodeError:
            return np.empty(0)
        return np.asarray([t for t in times if t], dtype=float)


def n_features(bundle: Path) -> int:
    """The columns of the bundle's rows (its manifest's feature_names)."""
    return len(json.loads((bundle / "manifest.json").read_text())["feature_names"])


def feature_requests(bundle: Path, size: int, count: int, seed: int = 11) -> list[bytes]:
    """Serialised ScoreRequests carrying a `size` x n_features float32 matrix of the bundle's
    parity-probe rows (real rows, NaNs included), drawn afresh for each request."""
    probe = json.loads((bundle / "manifest.json").read_text())["parity_probe"]["rows"]
    rows = np.array([[np.nan if v is None else v for v in row] for row in probe], dtype="<f4")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        picked = rows[rng.choice(len(rows), size=size, replace=size > len(rows))]
        matrix = pb.FeatureMatrix(data=picked.tobytes(), rows=size, cols=rows.shape[1])
        out.append(pb.ScoreRequest(features=matrix, top_k=10).SerializeToString())
    return out


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def unary(target: str, pid: int, payloads: Sequence[bytes], seconds: float,
          in_flight: int = IN_FLIGHT) -> Run:  # fmt: skip
    """Score calls with `in_flight` outstanding for `seconds`, cycling through payloads."""
    run = Run()
    server = psutil.Process(pid)

    async def go() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary(SCORE, None, None)  # no serialisers: bytes in and out
            for payload in payloads[:WARM_UP_CALLS]:
                await call(payload)
            end = time.perf_counter() + seconds

            async def worker(n: int) -> None:
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    response = await call(payloads[n % len(payloads)])
                    run.calls.append(((time.perf_counter() - t0) * 1e6, response))
                    n += in_flight

            cpu0, t0 = _cpu_seconds(server), time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(in_flight)))
            run.seconds = time.perf_counter() - t0
            run.server_cpu_s = _cpu_seconds(server) - cpu0

    asyncio.run(go())
    return run


def streamed(target: str, pid: int, payloads: Sequence[bytes], seconds: float,
             streams: int, depth: int) -> Run:  # fmt: skip
    """ScoreStream: `streams` streams on one connection, each with `depth` messages written
    ahead of the answers read (depth 1: one message at a time); the latency of a message is
    from its write to its answer."""
    run = Run()
    server = psutil.Process(pid)

    async def one_stream(channel: grpc.aio.Channel, offset: int, end: float | None) -> None:
        call = channel.stream_stream(SCORE_STREAM, None, None)(None)
        sent: list[float] = []
        n = offset
        ahead = asyncio.Semaphore(depth)

        def more() -> bool:  # end None: the warm-up's fixed number of messages
            return n < offset + WARM_UP_CALLS if end is None else time.perf_counter() < end

        async def write() -> None:
            nonlocal n
            while more():
                await ahead.acquire()
                sent.append(time.perf_counter())
                await call.write(payloads[n % len(payloads)])
                n += streams
            await call.done_writing()

        writer = asyncio.create_task(write())
        i = 0
        async for response in call:
            ahead.release()
            if end is not None:
                run.calls.append(((time.perf_counter() - sent[i]) * 1e6, response))
            i += 1
        await writer

    async def go() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            await one_stream(channel, 0, None)  # warm up
            end = time.perf_counter() + seconds
            cpu0, t0 = _cpu_seconds(server), time.perf_counter()
            await asyncio.gather(*(one_stream(channel, i, end) for i in range(streams)))
            run.seconds = time.perf_counter() - t0
            run.server_cpu_s = _cpu_seconds(server) - cpu0

    asyncio.run(go())
    return run


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def run_row(label: str, runs: Sequence[Run]) -> str:
    """A Markdown row: medians over the rounds of rate, server CPU per call, server_time_us
    p50/p99, and the round trip's p50/p99/p99.9/max over every call of every round."""
    rtt = np.concatenate([np.asarray(r.round_trip_us) for r in runs])
    server = np.concatenate([r.server_time_us() for r in runs])
    served = (
        f"{np.median(server):.0f} | {np.percentile(server, 99):.0f}" if len(server) else "- | -"
    )
    return (
        f"| {label} | {median([r.rate for r in runs]):,.0f} | "
        f"{median([r.cpu_per_call_us for r in runs]):.0f} | {served} | {np.median(rtt):.0f} | "
        f"{np.percentile(rtt, 99):.0f} | {np.percentile(rtt, 99.9):.0f} | {rtt.max():.0f} | "
        f"{len(rtt)} |"
    )


HEADER = (
    "| target | calls/s (median) | server CPU per call (us, median) | server_time_us p50 | "
    "p99 | round trip p50 (us) | p99 | p99.9 | max | calls |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def ratio(runs_a: Sequence[Run], runs_b: Sequence[Run], cpu: bool) -> float:
    """The median over rounds of a's CPU per call / b's (cpu) or a's rate / b's."""
    pairs = zip(runs_a, runs_b, strict=True)
    if cpu:
        return median([a.cpu_per_call_us / b.cpu_per_call_us for a, b in pairs])
    return median([a.rate / b.rate for a, b in pairs])


# Frames whose share of the samples the profile table reports (py-spy's function names).
PROFILED_FRAMES = (
    ("idle: the event loop waiting in epoll", "EpollSelector.select"),
    ("grpc's poller and other threads", "Thread.run"),
    ("the call guard (every call of the Recommender service)", "CallGuard._guarded.<locals>.call"),
    ("the ScoreStream message loop", "RecommenderServicer.ScoreStream"),
    ("Handlers.score (decode, core, encode, stage metrics)", "Handlers.score"),
    ("of which decode: score_query_from_proto", "score_query_from_proto"),
    ("of which Scorer.score (validation, lookups, kernel, ranking)", "Scorer.score"),
    ("of that, the kernel call and its session lookups", "native_scores"),
    ("of that, ranking", "rank"),
    ("of which encode: score_response", "score_response"),
    ("of which stage metrics", "Metrics.observe_stages"),
    ("the queue monitor (load shedding)", "QueueMonitor.run"),
)


def frame_shares(raw: Path) -> tuple[int, dict[str, float]]:
    """Samples in a py-spy `--format raw` file, and the share of them each PROFILED_FRAMES
    function appears in (anywhere on the stack)."""
    total, hits = 0, dict.fromkeys((name for _, name in PROFILED_FRAMES), 0)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        names = {frame.split(" (")[0] for frame in stack.split(";")}
        for name in hits:
            if name in names:
                hits[name] += int(count)
    return total, {name: n / max(total, 1) for name, n in hits.items()}


def profile_table(profiles: Sequence[tuple[str, Path]]) -> str:
    """A Markdown table of frame_shares for each (label, raw py-spy file)."""
    shares = [(label, *frame_shares(path)) for label, path in profiles]
    lines = [
        "| part (share of all samples, every thread) | "
        + " | ".join(f"{label} ({total} samples)" for label, total, _ in shares)
        + " |",
        "|---|" + "---:|" * len(shares),
    ]
    for label, name in PROFILED_FRAMES:
        lines.append(f"| {label} | " + " | ".join(f"{s[name]:.1%}" for _, _, s in shares) + " |")
    return "\n".join(lines)
