"""Pause benchmark: latency tails and garbage-collection pauses with many events held in process.

    python -m loadtest.pausebench --bundle artifacts/latest [--baseline-dir DIR] [--quick]

For each server (a baseline checkout's, if given, then this one's), all started the same way
through loadtest/gcwatch.py so that every collection is timed identically:
1. preload --sessions sessions x --events events into the in-process store (StreamEvents),
2. find the capacity of the TrackEvent + Score mix (open loop above it, concurrency capped),
3. run that mix open-loop at --load of capacity for --duration seconds,
and print one Markdown row each: events held, RSS and bytes per session, capacity, latency
percentiles from the intended send time (p50 / p99 / p99.9 / max), the server's own time, and the
collections (count and longest, per generation) during the load run (warm-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import psutil

from loadtest.gcwatch import read_pauses
from loadtest.generator import run_load
from loadtest.latency import Percentiles
from loadtest.plan import LoadPlan
from loadtest.products import load_product_ids
from loadtest.schedule import RateSchedule
from loadtest.server_process import ManagedServer, ServerSpec, baseline_parser, checkout_command
from loadtest.workload import Mix
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc

GCWATCH = Path(__file__).resolve().with_name("gcwatch.py")
STREAMS = 4  # concurrent StreamEvents calls while preloading
EVENTS_PER_STREAM_CALL = 2_000


@dataclass
class Outcome:
    """What one server did."""

    label: str
    events_held: int
    preload_s: float
    rss_before_mib: float
    rss_after_mib: float
    capacity_rps: float
    rate_rps: float
    latency_ms: Percentiles
    server_us: Percentiles
    errors: int
    pauses: list[tuple[int, float, float]]  # (generation, start, seconds) in the window
    worst_pause_s: dict[int, float]  # over the whole run, preload included

    def row(self, sessions: int) -> str:
        per_session = (self.rss_after_mib - self.rss_before_mib) * 2**20 / max(1, sessions)
        counts = [sum(1 for g, _, _ in self.pauses if g == gen) for gen in range(3)]
        longest = [max((s for g, _, s in self.pauses if g == gen), default=0.0) for gen in range(3)]
        lat, srv = self.latency_ms, self.server_us
        return (
            f"| {self.label} | {self.events_held:,} | {self.rss_after_mib:,.0f} | "
            f"{per_session:,.0f} | {self.capacity_rps:,.0f} | {self.rate_rps:,.0f} | "
            f"{lat.p50:.2f} | {lat.p99:.2f} | {lat.p99_9:.2f} | {lat.max:.1f} | "
            f"{srv.p99_9 / 1000:.2f} | {srv.max / 1000:.1f} | {self.errors} | "
            f"{counts[0]} / {counts[1]} / {counts[2]} | "
            f"{longest[0] * 1e3:.1f} / {longest[1] * 1e3:.1f} / {longest[2] * 1e3:.1f} | "
            f"{self.worst_pause_s.get(2, 0.0) * 1e3:.0f} |"
        )


HEADER = (
    "| server | events held | RSS MiB | bytes/session | capacity/s | rate/s | p50 ms | p99 ms "
    "| p99.9 ms | max ms | server p99.9 ms | server max ms | errors | collections gen 0/1/2 "
    "| longest gen 0/1/2 ms | longest gen-2 ms, whole run |\n"
    "|---|" + "---:|" * 15
)


async def preload(target: str, sessions: int, events: int, products: tuple[str, ...]) -> int:
    """Tracks `events` views in each of `sessions` sessions through StreamEvents; returns the
    number accepted."""
    rng = np.random.default_rng(3)
    total = sessions * events
    picks = rng.integers(len(products), size=total)

    def messages(first: int, last: int) -> list[pb.TrackEventRequest]:
        out = []
        for k in range(first, last):
            session, n = divmod(k, events)
            event = pb.Event(event_id=f"pre-{session}-{n}", session_id=f"pre-{session}",
                             type=pb.EVENT_TYPE_VIEW, product_id=products[picks[k]],
                             device_type="Mobile", traffic_source="Direct")  # fmt: skip
            out.append(pb.TrackEventRequest(event=event))
        return out

    accepted = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        starts = list(range(0, total, EVENTS_PER_STREAM_CALL))

        async def stream(worker: int) -> None:
            nonlocal accepted
            for first in starts[worker::STREAMS]:
                batch = messages(first, min(total, first + EVENTS_PER_STREAM_CALL))
                summary = await stub.StreamEvents(iter(batch), timeout=600)
                accepted += summary.accepted

        await asyncio.gather(*(stream(w) for w in range(STREAMS)))
    return accepted


def plan_for(target: str, products: tuple[str, ...], args: argparse.Namespace, rate: float,
             seconds: float, concurrency: int) -> LoadPlan:  # fmt: skip
    return LoadPlan(
        target=target,
        schedule=RateSchedule(rate, rate, seconds, warmup_s=args.warmup),
        mix=Mix.parse(args.scenario),
        candidates=args.candidates,
        concurrency=concurrency,
        workers=1,
        channels=2,
        timeout_s=5.0,
        seed=11,
        products=products,
        run_id=uuid.uuid4().hex[:8],
    )


def measure(label: str, command: str, args: argparse.Namespace, products: tuple[str, ...],
            logs: Path) -> Outcome:  # fmt: skip
    pauses_file = logs / f"pauses-{label.split(maxsplit=1)[0]}.txt"
    spec = ServerSpec(
        bundle=args.bundle.resolve(),
        command=f"{command} {shlex.quote(str(pauses_file))} server",
        extra_args=("--watch-seconds", "0", "--max-sessions", str(args.sessions + 10_000)),
    )
    with ManagedServer(spec, logs / f"server-{label.split(maxsplit=1)[0]}.log") as server:
        process = psutil.Process(server.pid)
        rss_before = process.memory_info().rss / 2**20
        t0 = time.perf_counter()
        held = asyncio.run(preload(server.target, args.sessions, args.events, products))
        preload_s = time.perf_counter() - t0
        rss_after = process.memory_info().rss / 2**20
        print(f"  {label}: preloaded {held:,} events in {preload_s:.0f} s, RSS {rss_after:.0f} "
              "MiB; finding capacity", file=sys.stderr, flush=True)  # fmt: skip
        probe = run_load(plan_for(server.target, products, args, args.probe_rate, 8.0, 8),
                         progress=None)  # fmt: skip
        capacity = probe.summary.ok_rps
        rate = capacity * args.load
        print(f"  {label}: capacity {capacity:.0f}/s; {args.duration:.0f} s at {rate:.0f}/s",
              file=sys.stderr, flush=True)  # fmt: skip
        window_start = time.perf_counter()  # the load run, its warm-up included
        result = run_load(plan_for(server.target, products, args, rate, args.duration, 64),
                          progress=None)  # fmt: skip
        window_end = time.perf_counter()
    pauses = read_pauses(pauses_file)
    worst: dict[int, float] = {}
    for generation, _, seconds in pauses:
        worst[generation] = max(worst.get(generation, 0.0), seconds)
    summary = result.summary
    return Outcome(
        label=label,
        events_held=held,
        preload_s=preload_s,
        rss_before_mib=rss_before,
        rss_after_mib=rss_after,
        capacity_rps=capacity,
        rate_rps=rate,
        latency_ms=summary.latency_ms,
        server_us=summary.server_time_us,
        errors=summary.counts.errors + summary.counts.dropped,
        pauses=[p for p in pauses if window_start <= p[1] <= window_end],
        worst_pause_s=worst,
    )


def main() -> int:
    parser = baseline_parser("python -m loadtest.pausebench", __doc__)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10, help="events per preloaded session")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--load", type=float, default=0.7, help="share of capacity")
    parser.add_argument("--probe-rate", type=float, default=5000.0,
                        help="offered rate while finding capacity (above it)")  # fmt: skip
    parser.add_argument("--scenario", default="track=4,score=1")
    parser.add_argument("--candidates", type=int, default=20, help="per Score request")
    parser.add_argument("--quick", action="store_true", help="10k sessions, 10 s (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.duration = 10_000, 10.0
    products = load_product_ids(args.bundle / "catalog.csv")
    logs = Path(tempfile.mkdtemp(prefix="reco-pausebench-"))
    servers = [("this checkout", None)]
    if args.baseline_dir is not None:
        servers.insert(0, (f"baseline ({args.baseline_dir.name})", args.baseline_dir))
    print(f"`python -m loadtest.pausebench {' '.join(sys.argv[1:])}` on {os.cpu_count()} CPUs, "
          f"load average before {os.getloadavg()[0]:.2f}; scenario {args.scenario}, "
          f"{args.candidates} candidates per Score; logs in {logs}\n", flush=True)  # fmt: skip
    outcomes = [
        measure(label, checkout_command(d, str(GCWATCH)), args, products, logs)
        for label, d in servers
    ]
    print(HEADER)
    for outcome in outcomes:
        print(outcome.row(args.sessions))
    print(f"\nload average after: {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} (1 / 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
