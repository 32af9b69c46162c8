"""Long sessions with Redis: Recommend and TrackEvent latency by the number of events a session
holds, and another client's Score latency meanwhile.

    python -m loadtest.sessionbench --bundle artifacts/latest [--baseline-dir DIR]

For each server (a baseline checkout's, if given, then this one's), each with its own fresh
redis-server, and for each size in --sizes: one session is given that many events, then
Recommend and TrackEvent on it are timed back to back while a second client sends 20-candidate
Score requests (context given, no store read) in a loop. Prints one Markdown row per (server,
size). This checkout's sessions are filled through the API (StreamEvents); a baseline's are
written straight into Redis in main's layout (one hash field of event JSON per event), because
main's TrackEvent re-reads every event of the session and would take hours to fill 100k.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np

from loadtest.products import load_product_ids
from loadtest.server_process import ManagedServer, ServerSpec, baseline_parser, checkout_command
from loadtest.serverbench import redis_server
from reco.settings import comma_list, integer, number, run_cli
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc

HEADER = (
    "| server | events in the session | Recommend p50 ms | Recommend server p50 ms "
    "| TrackEvent p50 ms | Score p50 ms meanwhile | Score p99 ms meanwhile | Score requests |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)
MAIN_PREFIX = "reco:session:"  # main's layout: hash event_id -> event JSON


def event(session: str, n: int, at_ms: int, product: str) -> pb.Event:
    kind = pb.EVENT_TYPE_VIEW if n % 5 else pb.EVENT_TYPE_SCROLL
    message = pb.Event(
        event_id=f"{session}-{n}",
        session_id=session,
        type=kind,
        product_id=product,
        device_type="Mobile",
        traffic_source="Direct",
    )
    if n % 5 == 0:
        message.scroll_depth = 0.5
    message.client_timestamp.FromMilliseconds(at_ms)
    return message


def fill_through_api(stub: pb_grpc.RecommenderStub, session: str, count: int,
                     products: tuple[str, ...], start_ms: int) -> None:  # fmt: skip
    for first in range(0, count, 5000):
        batch = (pb.TrackEventRequest(event=event(session, n, start_ms + n, products[n % 50]))
                 for n in range(first, min(count, first + 5000)))  # fmt: skip
        summary = stub.StreamEvents(batch, timeout=600)
        if summary.rejected:
            raise SystemExit(f"the server rejected events: {summary.errors[0].message}")


def fill_main_layout(url: str, session: str, count: int, products: tuple[str, ...],
                     start_ms: int) -> None:  # fmt: skip
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        e = event(session, n, start_ms + n, products[n % 50])
        payload = {"i": e.event_id, "s": session, "t": "view" if n % 5 else "scroll",
                   "ts": start_ms + n, "p": e.product_id, "c": "", "top": None,
                   "sd": 0.5 if n % 5 == 0 else None, "d": "Mobile", "tr": "Direct"}  # fmt: skip
        pipe.hset(f"{MAIN_PREFIX}{session}", e.event_id, json.dumps(payload))
        if n % 5000 == 4999:
            pipe.execute()
    pipe.pexpire(f"{MAIN_PREFIX}{session}", 1_800_000)
    pipe.execute()


def score_loop(target: str, products: tuple[str, ...], stop: threading.Event,
               latencies: list[float]) -> None:  # fmt: skip
    """Another client: Score requests back to back (5 ms apart) until `stop`."""
    rng = np.random.default_rng(5)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        context = pb.SessionContext(session_id="other-client", current_product_id=products[0],
                                    device_type="Desktop", traffic_source="Direct")  # fmt: skip
        while not stop.is_set():
            ids = [products[i] for i in rng.choice(len(products), 20, replace=False).tolist()]
            t0 = time.perf_counter()
            stub.Score(pb.ScoreRequest(context=context, candidate_ids=ids, top_k=5), timeout=30)
            latencies.append((time.perf_counter() - t0) * 1e3)
            stop.wait(0.005)


def measure_size(target: str, url: str, size: int, products: tuple[str, ...], baseline: bool,
                 args: SimpleNamespace) -> str:  # fmt: skip
    session = f"long-{size}-{uuid.uuid4().hex[:6]}"
    start_ms = time.time_ns() // 1_000_000 - 3_600_000
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        if baseline:
            fill_main_layout(url, session, size, products, start_ms)
        else:
            fill_through_api(stub, session, size, products, start_ms)
        stub.Recommend(pb.RecommendRequest(session_id=session, k=3), timeout=120)  # warm
        scores: list[float] = []
        stop = threading.Event()
        other = threading.Thread(target=score_loop, args=(target, products, stop, scores))
        other.start()
        recommend: list[float] = []
        server_side: list[float] = []
        track: list[float] = []
        deadline = time.perf_counter() + args.seconds
        n = size
        enough = time.perf_counter() + args.min_seconds  # so the other client gets samples too
        while time.perf_counter() < deadline and (
            len(recommend) < args.requests or time.perf_counter() < enough
        ):
            t0 = time.perf_counter()
            response = stub.Recommend(pb.RecommendRequest(session_id=session, k=3), timeout=120)
            recommend.append((time.perf_counter() - t0) * 1e3)
            server_side.append(response.server_time_us / 1e3)
            t0 = time.perf_counter()
            more = event(session, n, start_ms + n, products[n % 50])
            stub.TrackEvent(pb.TrackEventRequest(event=more), timeout=120)
            track.append((time.perf_counter() - t0) * 1e3)
            n += 1
        stop.set()
        other.join()
    label = "baseline" if baseline else "this checkout"
    return (
        f"| {label} | {size:,} | {np.median(recommend):.2f} | {np.median(server_side):.2f} | "
        f"{np.median(track):.2f} | {np.median(scores):.2f} | {np.percentile(scores, 99):.2f} | "
        f"{len(scores)} |"
    )


def supports(command: str, flag: str) -> bool:
    """Whether a server command knows a flag (a baseline may predate it)."""
    result = subprocess.run([*shlex.split(command), "--help"], capture_output=True, text=True,
                            check=False)  # fmt: skip
    return flag in result.stdout


def main() -> int:
    parser = baseline_parser("python -m loadtest.sessionbench", __doc__)
    parser.add("--sizes", comma_list(integer(1)), "10,1000,10000,100000", "events per session")
    parser.add("--requests", integer(1), "40", "most Recommend calls per size")
    parser.add("--seconds", number(positive=True), "20", "most time per size")
    parser.add("--min-seconds", number(0), "3", "least time per size")
    parser.add(
        "--redis-config",
        str,
        "",
        'redis-server flags, e.g. "--appendonly yes --appendfsync always" (default: none)',
    )
    args = SimpleNamespace(**parser.parse())
    products = load_product_ids(args.bundle / "catalog.csv")
    sizes = list(args.sizes)
    logs = Path(tempfile.mkdtemp(prefix="reco-sessionbench-"))
    servers = [("this checkout", checkout_command(None, "-m", "server"), False)]
    if args.baseline_dir is not None:
        servers.insert(0, ("baseline", checkout_command(args.baseline_dir, "-m", "server"), True))
    print(f"`python -m loadtest.sessionbench {' '.join(sys.argv[1:])}` on {os.cpu_count()} CPUs, "
          f"load average before {os.getloadavg()[0]:.2f}; Redis flags: "
          f"{args.redis_config or 'no persistence'}; logs in {logs}\n")  # fmt: skip
    print(HEADER, flush=True)
    for label, command, baseline in servers:
        cap = str(2 * max(sizes) + 10_000)
        extra: tuple[str, ...] = ("--max-session-events", cap,
                                  "--max-session-bytes", str(64 * int(cap)))  # fmt: skip
        if not supports(command, "--max-session-events"):
            extra = ()
        with redis_server(*shlex.split(args.redis_config)) as url:
            flags = ("--watch-seconds", "0", "--session-store", url, *extra)
            spec = ServerSpec(bundle=args.bundle.resolve(), command=command, extra_args=flags)
            with ManagedServer(spec, logs / f"server-{label.replace(' ', '-')}.log") as server:
                for size in sizes:
                    row = measure_size(server.target, url, size, products, baseline, args)
                    print(row, flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} (1 / 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m loadtest.sessionbench", main))
