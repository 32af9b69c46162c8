"""What the impression log costs a request: the same server with and without it, interleaved.

    python -m loadtest.logbench [--bundle artifacts/latest] [--rounds 3] [--baseline-dir DIR]

Each round starts the servers one after the other: with --baseline-dir, another checkout's
(e.g. `git archive` of main: before the log existed); this one's without the log; this one's
with `--impression-log-dir` (and the rotation the defaults give). It measures on each:
Recommend (k=5, tracked sessions) back to back, server_time_us and round trip with the tail;
Recommend throughput with 8 calls in flight; Score of 100 candidate ids asking for
log_impression (back to back). Medians over rounds and the ratio log / no log are printed last.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np

from loadtest.products import load_product_ids
from loadtest.server_process import baseline_parser, checkouts
from loadtest.serverbench import Requests, Timings, server
from reco.settings import boolean, integer, number, run_cli
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc

LOGGED = "log"


def tracked_sessions(stub: pb_grpc.RecommenderStub, requests: Requests, n: int) -> list[str]:
    """n sessions with two views each, so Recommend scores a real context."""
    sessions = []
    for _ in range(n):
        session = f"logbench-{uuid.uuid4().hex[:10]}"
        for k, kind in enumerate((pb.EVENT_TYPE_VIEW, pb.EVENT_TYPE_VIEW)):
            stub.TrackEvent(requests.event(session, k, kind))
        sessions.append(session)
    return sessions


def sequential_recommend(stub: pb_grpc.RecommenderStub, sessions: list[str], count: int) -> Timings:
    """Recommend back to back over the sessions."""
    timings = Timings()
    for session in sessions[:50]:
        stub.Recommend(pb.RecommendRequest(session_id=session, k=5))
    started = time.perf_counter()
    for n in range(count):
        t0 = time.perf_counter()
        response = stub.Recommend(pb.RecommendRequest(session_id=sessions[n % len(sessions)], k=5))
        timings.add(time.perf_counter() - t0, response.server_time_us)
    timings.seconds = time.perf_counter() - started
    return timings


def concurrent_recommend(target: str, sessions: list[str], seconds: float) -> float:
    """Recommend calls per second with 8 in flight."""
    done = 0

    async def run() -> float:
        nonlocal done
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            end = time.perf_counter() + seconds

            async def worker(offset: int) -> None:
                nonlocal done
                n = offset
                while time.perf_counter() < end:
                    await stub.Recommend(pb.RecommendRequest(session_id=sessions[n % len(sessions)],
                                                             k=5))  # fmt: skip
                    done += 1
                    n += 8

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(8)))
            return done / (time.perf_counter() - t0)

    return asyncio.run(run())


def logged_score(stub: pb_grpc.RecommenderStub, requests: Requests, count: int) -> Timings:
    """Score of 100 ids with log_impression, back to back."""
    timings = Timings()
    prepared = []
    for _ in range(count):
        request = requests.score(100, packed=True)
        request.log_impression = True
        prepared.append(request)
    for request in prepared[:50]:
        stub.Score(request)
    for request in prepared:
        t0 = time.perf_counter()
        response = stub.Score(request)
        timings.add(time.perf_counter() - t0, response.server_time_us)
    return timings


def tail(t: Timings) -> list[float]:
    """server p50, p99, p99.9, max; round trip p50, p99 (us)."""
    s, r = np.asarray(t.server_us), np.asarray(t.round_trip_us)
    return [float(np.median(s)), float(np.percentile(s, 99)), float(np.percentile(s, 99.9)),
            float(s.max()), float(np.median(r)), float(np.percentile(r, 99))]  # fmt: skip


def main() -> int:
    parser = baseline_parser("python -m loadtest.logbench", __doc__)
    parser.add("--requests", integer(100), "3000", "Recommend / Score calls per series")
    parser.add("--seconds", number(positive=True), "6", "per throughput series")
    parser.add("--rounds", integer(1), "3", "alternations of the servers")
    parser.add("--quick", boolean, "false", "a fifth of the work (smoke run)")
    args = SimpleNamespace(**parser.parse())
    if args.quick:
        args.requests, args.seconds, args.rounds = args.requests // 5, args.seconds / 3, 1
    requests = Requests(load_product_ids(args.bundle / "catalog.csv"))
    logs = Path(tempfile.mkdtemp(prefix="reco-logbench-"))
    print(
        f"`python -m loadtest.logbench {' '.join(sys.argv[1:])}` on {os.cpu_count()} CPUs, load "
        f"average before {os.getloadavg()[0]:.2f}; load shedding off (--max-queue-ms 0)\n"
    )
    print(
        "| round, server | Recommend server p50 / p99 / p99.9 / max (us) | round trip p50 / "
        "p99 (us) | Recommend/s, 8 in flight | logged Score-100 server p50 / p99 (us) |"
    )
    print("|---|---:|---:|---:|---:|")
    *baseline, (_, here) = checkouts(args.baseline_dir, "-m", "server")
    configs = [*baseline, ("no log", here), (LOGGED, here)]
    medians: dict[str, list[list[float]]] = {name: [] for name, _ in configs}
    for round_ in range(args.rounds):
        for config, command in configs:
            # shedding off: on a shared VM 8 in flight may queue past 50 ms, and every server
            # must do all the work asked of them
            flags: tuple[str, ...] = ("--max-queue-ms", "0")
            if config == LOGGED:
                flags += ("--impression-log-dir", str(logs / f"impressions-{round_}"))
            with (
                server(args.bundle, logs, *flags, command=command) as running,
                grpc.insecure_channel(running.target) as channel,
            ):
                stub = pb_grpc.RecommenderStub(channel)
                sessions = tracked_sessions(stub, requests, 200)
                rec = tail(sequential_recommend(stub, sessions, args.requests))
                rate = concurrent_recommend(running.target, sessions, args.seconds)
                score = tail(logged_score(stub, requests, args.requests // 2))
            medians[config].append([*rec, rate, score[0], score[1]])
            print(f"| {round_ + 1}, {config} | {rec[0]:.0f} / {rec[1]:.0f} / {rec[2]:.0f} / "
                  f"{rec[3]:.0f} | {rec[4]:.0f} / {rec[5]:.0f} | {rate:.0f} | {score[0]:.0f} / "
                  f"{score[1]:.0f} |", flush=True)  # fmt: skip
    middle = {name: np.median(np.asarray(rows), axis=0) for name, rows in medians.items()}
    off, on = middle["no log"], middle[LOGGED]
    print(
        f"\nMedians over rounds, log / no log: Recommend server p50 {on[0]:.0f} / {off[0]:.0f} "
        f"us ({on[0] / off[0]:.2f}x, {on[0] - off[0]:+.0f} us), p99 {on[1]:.0f} / {off[1]:.0f} "
        f"us, round trip p50 {on[4]:.0f} / {off[4]:.0f} us, throughput {on[6]:.0f} / "
        f"{off[6]:.0f} calls/s ({on[6] / off[6]:.2f}x); logged Score-100 p50 {on[7]:.0f} / "
        f"{off[7]:.0f} us (the server without a log only names the response)"
    )
    if args.baseline_dir is not None:
        base = middle[configs[0][0]]
        print(f"Against the baseline: Recommend server p50 {base[0]:.0f} us, no log "
              f"{off[0]:.0f} ({off[0] / base[0]:.2f}x), log {on[0]:.0f} ({on[0] / base[0]:.2f}x); "
              f"throughput {base[6]:.0f} / {off[6]:.0f} / {on[6]:.0f} calls/s")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m loadtest.logbench", main))
