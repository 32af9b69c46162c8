"""Pause benchmark: latency tails and garbage-collection pauses with many events held in process.

    python -m loadtest.pausebench --bundle artifacts/latest [--baseline-dir DIR] [--quick]

For each server (a baseline checkout's, if given, then this one's), all started the same way
through loadtest/gcwatch.py so that every collection is timed identically:
1. find the capacity of the TrackEvent + Score mix on the empty store (open loop above it,
   concurrency capped at 8),
2. "filling": that mix open-loop at --fill-load of capacity while --sessions x --events
   events are streamed into the in-process store at --fill-rate (StreamEvents): the store
   grows, which is when CPython's full collections run,
3. "held": the mix at --load of capacity for --duration seconds with every event held.
One Markdown row per phase: events held, RSS and its growth per session, capacity, latency from
the intended send time (p50 / p99 / p99.9 / max), the server's own time, errors, and the
collections (count and longest, per generation) during the phase.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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
from reco.settings import boolean, integer, number, run_cli
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc

GCWATCH = Path(__file__).resolve().with_name("gcwatch.py")
STREAMS = 4  # concurrent StreamEvents calls while preloading
EVENTS_PER_STREAM_CALL = 2_000
# A preload stream shed by the server (RESOURCE_EXHAUSTED) is resent up to this many times.
SHED_RETRIES = 50


@dataclass
class Phase:
    """One measured load run on one server."""

    server: str
    name: str
    events_held: int  # at the end of the phase
    rss_mib: float  # at the end of the phase
    bytes_per_session: float
    capacity_rps: float
    rate_rps: float
    latency_ms: Percentiles
    server_us: Percentiles
    errors: int
    pauses: list[tuple[int, float, float]]  # (generation, start, seconds) during the run

    def row(self) -> str:
        counts = [sum(1 for g, _, _ in self.pauses if g == gen) for gen in range(3)]
        longest = [max((s for g, _, s in self.pauses if g == gen), default=0.0) for gen in range(3)]
        lat, srv = self.latency_ms, self.server_us
        return (
            f"| {self.server} | {self.name} | {self.events_held:,} | {self.rss_mib:,.0f} | "
            f"{self.bytes_per_session:,.0f} | {self.capacity_rps:,.0f} | {self.rate_rps:,.0f} | "
            f"{lat.p50:.2f} | {lat.p99:.2f} | {lat.p99_9:.2f} | {lat.max:.1f} | "
            f"{srv.p99_9 / 1000:.2f} | {srv.max / 1000:.1f} | {self.errors} | "
            f"{counts[0]} / {counts[1]} / {counts[2]} | "
            f"{longest[0] * 1e3:.1f} / {longest[1] * 1e3:.1f} / {longest[2] * 1e3:.1f} |"
        )


HEADER = (
    "| server | phase | events held | RSS MiB | bytes/session | capacity/s | rate/s | p50 ms "
    "| p99 ms | p99.9 ms | max ms | server p99.9 ms | server max ms | errors + dropped "
    "| collections gen 0/1/2 | longest gen 0/1/2 ms |\n"
    "|---|---|" + "---:|" * 14
)


async def preload(target: str, sessions: int, events: int, products: tuple[str, ...],
                  rate: float) -> int:  # fmt: skip
    """Tracks `events` views in each of `sessions` sessions through StreamEvents, about `rate`
    events per second; returns the number accepted."""
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

        begin = time.perf_counter()

        async def stream(worker: int) -> None:
            nonlocal accepted
            for first in starts[worker::STREAMS]:
                await asyncio.sleep(max(0.0, begin + first / rate - time.perf_counter()))
                batch = messages(first, min(total, first + EVENTS_PER_STREAM_CALL))
                for attempt in range(SHED_RETRIES):
                    try:
                        summary = await stub.StreamEvents(iter(batch), timeout=600)
                        break
                    except grpc.aio.AioRpcError as exc:
                        # Shed under the filling load: resend (events dedupe by event_id).
                        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                            raise
                        await asyncio.sleep(0.05 * (attempt + 1))
                else:
                    raise RuntimeError(f"StreamEvents shed {SHED_RETRIES} times in a row")
                accepted += summary.accepted

        await asyncio.gather(*(stream(w) for w in range(STREAMS)))
    return accepted


def plan_for(target: str, products: tuple[str, ...], args: SimpleNamespace, rate: float,
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


def measure(label: str, command: str, args: SimpleNamespace, products: tuple[str, ...],
            logs: Path) -> list[Phase]:  # fmt: skip
    """Capacity on the empty store, then the load while the store fills, then while it holds."""
    name = label.split(maxsplit=1)[0]
    pauses_file = logs / f"pauses-{name}.txt"
    spec = ServerSpec(
        bundle=args.bundle.resolve(),
        command=f"{command} {shlex.quote(str(pauses_file))} server",
        extra_args=("--watch-seconds", "0", "--max-sessions", str(args.sessions + 10_000)),
    )
    runs = []
    with ManagedServer(spec, logs / f"server-{name}.log") as server:
        process = psutil.Process(server.pid)
        rss_empty = process.memory_info().rss
        probe = run_load(plan_for(server.target, products, args, args.probe_rate, 8.0, 8),
                         progress=None)  # fmt: skip
        capacity = probe.summary.ok_rps
        # The same offered load for every server with --rate, else a share of its capacity.
        rate = args.rate if args.rate else capacity * args.load
        fill_rate = rate * args.fill_load / args.load
        fill_seconds = args.sessions * args.events / args.fill_rate
        print(f"  {label}: capacity {capacity:.0f}/s; filling the store in about "
              f"{fill_seconds:.0f} s under {fill_rate:.0f}/s",
              file=sys.stderr, flush=True)  # fmt: skip
        loaded: list[Any] = []
        started = time.perf_counter()
        fill = plan_for(server.target, products, args, fill_rate, fill_seconds, 64)
        load = threading.Thread(target=lambda: loaded.append(run_load(fill, progress=None)))
        load.start()
        held = asyncio.run(
            preload(server.target, args.sessions, args.events, products, args.fill_rate)
        )
        filled_s = time.perf_counter() - started
        load.join()
        runs.append(("filling", held, process.memory_info().rss, started, time.perf_counter(),
                     loaded[0]))  # fmt: skip
        print(f"  {label}: {held:,} events held after {filled_s:.0f} s; {args.duration:.0f} s "
              f"at {rate:.0f}/s", file=sys.stderr, flush=True)  # fmt: skip
        started = time.perf_counter()
        plan = plan_for(server.target, products, args, rate, args.duration, 64)
        result = run_load(plan, progress=None)
        runs.append(("held", held, process.memory_info().rss, started, time.perf_counter(),
                     result))  # fmt: skip
    pauses = read_pauses(pauses_file)
    phases = []
    for phase, events, rss, begin, end, run in runs:
        summary = run.summary
        phases.append(Phase(
            server=label, name=phase, events_held=events, rss_mib=rss / 2**20,
            bytes_per_session=(rss - rss_empty) / args.sessions, capacity_rps=capacity,
            rate_rps=run.plan.schedule.end_rps, latency_ms=summary.latency_ms,
            server_us=summary.server_time_us,
            errors=summary.counts.errors + summary.counts.dropped,
            pauses=[p for p in pauses if begin <= p[1] <= end],
        ))  # fmt: skip
    worst = max((s for g, _, s in pauses if g == 2), default=0.0)
    print(f"  {label}: longest gen-2 collection over the whole run (start-up included): "
          f"{worst * 1e3:.0f} ms", file=sys.stderr, flush=True)  # fmt: skip
    return phases


def main() -> int:
    parser = baseline_parser("python -m loadtest.pausebench", __doc__)
    parser.add("--sessions", integer(1), "100000", "sessions preloaded into the store")
    parser.add("--events", integer(1), "10", "events per preloaded session")
    parser.add("--duration", number(positive=True), "60", "measured seconds")
    parser.add("--warmup", number(0), "5", "seconds before measuring")
    parser.add("--load", number(positive=True), "0.7", "share of capacity, held")
    parser.add(
        "--rate",
        number(0),
        "0",
        "requests/s while held, the same for every server (instead of --load x its capacity); "
        "filling runs at rate x fill-load / load",
    )
    parser.add("--fill-load", number(positive=True), "0.5",
               "share of capacity while filling (the filling costs CPU too)")  # fmt: skip
    parser.add("--fill-rate", number(positive=True), "10000",
               "events per second streamed into the store while filling")  # fmt: skip
    parser.add("--probe-rate", number(positive=True), "5000",
               "offered rate while finding capacity (above it)")  # fmt: skip
    parser.add("--scenario", str, "track=4,score=1", "request mix")
    parser.add("--candidates", integer(1), "20", "per Score request")
    parser.add("--quick", boolean, "false", "10k sessions, 10 s (smoke run)")
    args = SimpleNamespace(**parser.parse())
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
    phases = [
        phase
        for label, d in servers
        for phase in measure(label, checkout_command(d, str(GCWATCH)), args, products, logs)
    ]
    print(HEADER)
    for phase in phases:
        print(phase.row())
    print(f"\nload average after: {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} (1 / 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m loadtest.pausebench", main))
