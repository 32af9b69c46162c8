"""Server latency benchmark: server-side and end-to-end times per RPC, store and server layout.

    python -m loadtest.serverbench [--bundle artifacts/latest] [--quick] [--baseline-dir DIR]

Starts real servers (`python -m server`, gRPC only from here) and prints Markdown tables:
1. Score with 1, 10, 100 and 1000 candidates: server_time_us and round trip, one request in
   flight (back to back) and eight in flight.
2. TrackEvent and Recommend with the in-process store and with Redis.
3. Server layouts (one grpc.aio process, or two sharing the port): throughput of 100-candidate
   Score calls with a fixed number in flight, and their latencies.
4. What one call costs the server in CPU time: the cheapest call there is (a health check,
   about what refusing an overload call costs), GetModelInfo, Score with 100 and 1000 ids.
5. With --ceiling (only): the issue-11 side by side (loadtest/ceiling.py): this server, a bare
   model-call handler and a bare echo on the same bundle, same client, interleaved rounds,
   with the ratios; ScoreStream against unary Score; server_time_us native vs python.
Every request scores a fresh random set of candidates from the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import numpy.typing as npt
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtest import ceiling
from loadtest.products import load_product_ids
from loadtest.server_process import (
    ManagedServer,
    ServerSpec,
    baseline_parser,
    checkout_command,
    checkouts,
)
from reco.settings import (
    SettingError,
    boolean,
    choice,
    comma_list,
    integer,
    number,
    optional_path,
    run_cli,
)
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc

BATCH_SIZES = (1, 10, 100, 1000)
TABLES = ("score", "sessions", "layouts", "cost", "ceiling")
CONTEXT = pb.SessionContext(
    session_id="bench",
    current_product_id="PROD0001",
    previous_product_ids=["PROD0002"],
    device_type="Desktop",
    traffic_source="Direct",
    time_on_page_sec=80,
    scroll_depth=0.7,
    products_in_cart=1,
    session_length_mins=12,
    products_viewed_count=4,
)


@dataclass
class Timings:
    """Round-trip and server-side times (microseconds) of one measured series."""

    round_trip_us: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu: float = 0.0
    # Calls the server shed (RESOURCE_EXHAUSTED): on a busy VM a latency series may queue past
    # the server's --max-queue-ms; they are counted beside the answered ones, not timed.
    shed: int = 0

    def add(self, round_trip_s: float, server_us: int) -> None:
        self.round_trip_us.append(round_trip_s * 1e6)
        self.server_us.append(float(server_us))

    def row(self, label: str) -> str:
        """A Markdown row: label, server p50/p99, round trip p50/p99, count."""
        s, r = np.asarray(self.server_us), np.asarray(self.round_trip_us)
        return (
            f"| {label} | {np.median(s):.0f} | {np.percentile(s, 99):.0f} | "
            f"{np.median(r):.0f} | {np.percentile(r, 99):.0f} | {len(r)}"
            + (f" (+{self.shed} shed)" if self.shed else "")
            + " |"
        )


class Requests:
    """Fresh requests: random candidates from the catalog, unique event ids."""

    def __init__(self, product_ids: tuple[str, ...], seed: int = 7) -> None:
        self.ids = product_ids
        self.rng = np.random.default_rng(seed)

    def score(self, size: int, packed: bool = False) -> pb.ScoreRequest:
        """A Score request for `size` random products, as Candidate messages or, with
        packed, as the candidate_ids list."""
        picked = self.rng.choice(len(self.ids), size=size, replace=size > len(self.ids))
        ids = [self.ids[i] for i in picked.tolist()]
        if packed:
            return pb.ScoreRequest(context=CONTEXT, candidate_ids=ids, top_k=10)
        candidates = [pb.Candidate(product_id=p) for p in ids]
        return pb.ScoreRequest(context=CONTEXT, candidates=candidates, top_k=10)

    def event(self, session: str, n: int, kind: pb.EventType) -> pb.TrackEventRequest:
        product = self.ids[int(self.rng.integers(len(self.ids)))]
        event = pb.Event(
            event_id=f"{session}-{n}",
            session_id=session,
            type=kind,
            product_id=product,
            device_type="Desktop",
            traffic_source="Direct",
            time_on_page_sec=float(self.rng.integers(5, 200)),
            scroll_depth=float(self.rng.random()),
        )
        return pb.TrackEventRequest(event=event)


def sequential_score(
    stub: pb_grpc.RecommenderStub, requests: Requests, size: int, count: int, packed: bool = False
) -> Timings:
    """One request in flight, back to back."""
    prepared = [requests.score(size, packed) for _ in range(count)]
    for request in prepared[: max(20, count // 10)]:  # warm the channel and the server
        stub.Score(request)
    timings = Timings()
    started = time.perf_counter()
    for request in prepared:
        t0 = time.perf_counter()
        response = stub.Score(request)
        timings.add(time.perf_counter() - t0, response.server_time_us)
    timings.seconds = time.perf_counter() - started
    return timings


def concurrent_score(
    target: str, requests: Requests, size: int, in_flight: int, seconds: float
) -> Timings:
    """`in_flight` requests outstanding at all times for `seconds` (grpc.aio client)."""
    prepared = [requests.score(size) for _ in range(500)]
    timings = Timings()
    process = psutil.Process()

    async def run() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            for request in prepared[:50]:
                await stub.Score(request)
            end = time.perf_counter() + seconds

            async def worker(offset: int) -> None:
                n = offset
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    n += in_flight
                    try:
                        response = await stub.Score(prepared[(n - in_flight) % len(prepared)])
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                            raise
                        timings.shed += 1
                        continue
                    timings.add(time.perf_counter() - t0, response.server_time_us)

            cpu0, t0 = process.cpu_times(), time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(in_flight)))
            cpu1 = process.cpu_times()
            timings.seconds = time.perf_counter() - t0
            timings.client_cpu = (
                cpu1.user + cpu1.system - cpu0.user - cpu0.system
            ) / timings.seconds

    asyncio.run(run())
    return timings


def session_rpcs(
    stub: pb_grpc.RecommenderStub, requests: Requests, sessions: int
) -> tuple[Timings, Timings]:
    """Shoppers: three views (and a cart add) each followed by a Recommend; returns
    (TrackEvent, Recommend) timings."""
    track, recommend = Timings(), Timings()
    kinds = (pb.EVENT_TYPE_VIEW, pb.EVENT_TYPE_VIEW, pb.EVENT_TYPE_ADD_TO_CART, pb.EVENT_TYPE_VIEW)
    for s in range(sessions):
        session = f"bench-{uuid.uuid4().hex[:10]}"
        for n, kind in enumerate(kinds):
            request = requests.event(session, n, kind)
            t0 = time.perf_counter()
            tracked = stub.TrackEvent(request)
            if s >= sessions // 10:  # the first tenth warms up
                track.add(time.perf_counter() - t0, tracked.server_time_us)
            t0 = time.perf_counter()
            response = stub.Recommend(pb.RecommendRequest(session_id=session, k=3))
            if s >= sessions // 10:
                recommend.add(time.perf_counter() - t0, response.server_time_us)
    return track, recommend


NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


@contextmanager
def redis_server(*config: str) -> Iterator[str]:
    """A throwaway redis-server on a free port, its files in a temporary directory; no
    persistence unless `config` asks for it (e.g. "--appendonly", "yes")."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="reco-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir,
         *(config or NO_PERSISTENCE)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis  # noqa: PLC0415 - only this benchmark part needs it

        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)  # redis-server has no readiness signal to wait on
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def server(bundle: Path, logs: Path, *flags: str, command: str = "") -> Iterator[ManagedServer]:
    """A server on free ports; `command` starts another checkout's (default: this one's)."""
    spec = ServerSpec(bundle=bundle.resolve(), extra_args=("--watch-seconds", "0", *flags))
    if command:
        spec = replace(spec, command=command)
    name = f"server-{uuid.uuid4().hex[:6]}-{'-'.join(flags) or 'default'}.log"
    with ManagedServer(spec, logs / name) as running:
        yield running


COLUMNS = ("server p50 (us)", "server p99 (us)", "round trip p50 (us)", "round trip p99 (us)")


def table_header(first: str, *extra: str) -> str:
    """A Markdown table header with the latency columns."""
    names = (first, *extra, *COLUMNS, "requests")
    return "| " + " | ".join(names) + " |\n|---|" + "---:|" * (len(names) - 1)


def layout_row(label: str, t: Timings) -> str:
    """A row of the layouts table: throughput, latencies, client CPU."""
    s, r = np.asarray(t.server_us), np.asarray(t.round_trip_us)
    cells = [
        f"{len(r) / t.seconds:.0f}",
        f"{np.median(s):.0f}",
        f"{np.percentile(s, 99):.0f}",
        f"{np.median(r):.0f}",
        f"{np.percentile(r, 99):.0f}",
        f"{len(r)}",
        f"{t.client_cpu:.0%}",
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


LAYOUTS = (
    ("1 process", ()),
    ("2 processes", ("--workers", "2")),
)


def rounds(args: SimpleNamespace) -> Iterator[tuple[str, str]]:
    """(row label, server command) of each checkout, alternating for --rounds rounds."""
    for round_ in range(args.rounds):
        for label, command in args.checkouts:
            yield (f"{label}, round {round_ + 1}" if args.rounds > 1 else label), command


def score_tables(args: SimpleNamespace, requests: Requests, logs: Path) -> None:
    print("Score on the default server: back to back (1 in flight), and 8 in flight\n")
    print(table_header("server, candidates"))
    for name, command in rounds(args):
        with (
            server(args.bundle, logs, command=command) as running,
            grpc.insecure_channel(running.target) as channel,
        ):
            stub = pb_grpc.RecommenderStub(channel)
            for size in BATCH_SIZES:
                timings = sequential_score(stub, requests, size, args.requests)
                print(timings.row(f"{name}: {size}, 1 in flight"))
            for size in (100, 1000):
                timings = sequential_score(stub, requests, size, args.requests, packed=True)
                print(timings.row(f"{name}: {size} as candidate_ids, 1 in flight"))
            for size in BATCH_SIZES:
                timings = concurrent_score(running.target, requests, size, 8, args.seconds)
                rate = len(timings.server_us) / timings.seconds
                print(timings.row(f"{name}: {size}, 8 in flight ({rate:.0f}/s)"), flush=True)
    print()


def session_tables(args: SimpleNamespace, requests: Requests, logs: Path) -> None:
    print("TrackEvent and Recommend (k=3, whole 200-product catalog), back to back\n")
    print(table_header("server, RPC, store"))
    for name, command in rounds(args):
        for store in ("in-process", "Redis"):
            with contextlib.ExitStack() as stack:
                flags: tuple[str, ...] = ()
                if store == "Redis":
                    flags = ("--session-store", stack.enter_context(redis_server()))
                running = stack.enter_context(server(args.bundle, logs, *flags, command=command))
                channel = stack.enter_context(grpc.insecure_channel(running.target))
                stub = pb_grpc.RecommenderStub(channel)
                track, recommend = session_rpcs(stub, requests, args.sessions)
            print(track.row(f"{name}: TrackEvent, {store}"))
            print(recommend.row(f"{name}: Recommend, {store}"), flush=True)
    print()


def layout_tables(args: SimpleNamespace, requests: Requests, logs: Path) -> None:
    print("Server layouts: 100-candidate Score, 16 in flight (the client shares the 2 cores)\n")
    header = table_header("layout", "requests/s").split("\n")
    print(header[0][:-1] + "| client CPU |\n" + header[1] + "---:|")
    with redis_server() as url:
        for label, flags in LAYOUTS:
            # Several processes need a shared session store (the server refuses otherwise).
            store = ("--session-store", url) if "--workers" in flags else ()
            with server(args.bundle, logs, *flags, *store) as running:
                timings = concurrent_score(running.target, requests, 100, 16, args.seconds)
            print(layout_row(label, timings), flush=True)
    print()


def server_cpu_per_call(target: str, pid: int, call: str, request: object, count: int,
                        in_flight: int = 8) -> tuple[float, float]:  # fmt: skip
    """Server CPU time (user + system, every thread) per call over `count` calls of `call`
    ("Service/Method") with `in_flight` outstanding; returns (microseconds, calls per second)."""
    server = psutil.Process(pid)

    async def run() -> tuple[float, float]:
        async with grpc.aio.insecure_channel(target) as channel:
            service, method = call.split("/")
            stub: object = (
                health_pb2_grpc.HealthStub(channel)
                if service == "Health"
                else pb_grpc.RecommenderStub(channel)
            )
            send = getattr(stub, method)
            for _ in range(100):  # warm the channel and the server
                await send(request)
            left = count

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await send(request)

            cpu0, t0 = server.cpu_times(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            cpu1, seconds = server.cpu_times(), time.perf_counter() - t0
        cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
        return cpu / count * 1e6, count / seconds

    return asyncio.run(run())


def cost_tables(args: SimpleNamespace, requests: Requests, logs: Path) -> None:
    print("Server CPU time per call (user + system, all threads), 8 in flight\n")
    print("| call | server CPU per call (us) | calls/s | calls |\n|---|---:|---:|---:|")
    calls = (
        ("Health.Check (any call's floor)", "Health/Check", health_pb2.HealthCheckRequest()),
        ("GetModelInfo", "Recommender/GetModelInfo", pb.GetModelInfoRequest()),
        ("Score, 100 candidate_ids", "Recommender/Score", requests.score(100, packed=True)),
        ("Score, 1000 candidate_ids", "Recommender/Score", requests.score(1000, packed=True)),
    )
    count = args.requests * 2
    with server(args.bundle, logs) as running:
        for label, call, request in calls:
            cpu, rate = server_cpu_per_call(running.target, running.pid, call, request, count)
            print(f"| {label} | {cpu:.0f} | {rate:.0f} | {count} |", flush=True)
    print()


@contextmanager
def bare_server(bundle: Path, logs: Path, mode: str) -> Iterator[ManagedServer]:
    """A bare grpc.aio server (server/ceiling.py: echo or model) on free ports."""
    command = checkout_command(None, "-m", "server.ceiling")
    spec = ServerSpec(bundle=bundle.resolve(), command=command, extra_args=("--mode", mode))
    with ManagedServer(spec, logs / f"bare-{mode}-{uuid.uuid4().hex[:6]}.log") as running:
        yield running


def ceiling_tables(args: SimpleNamespace, requests: Requests, logs: Path) -> None:
    """This server against the bare ceiling and echo, same bundle and client, interleaved
    rounds; then ScoreStream against unary Score; then server_time_us of Score (100 and 1000
    candidates) and Recommend on the native and the python scoring path, interleaved."""
    ids = [requests.score(100, packed=True).SerializeToString() for _ in range(500)]
    matrices = ceiling.feature_requests(args.bundle, 100, 500)
    layout = f"100x{ceiling.n_features(args.bundle)}"
    # No load shedding (the bare servers have none either): a stall of this shared VM would
    # otherwise turn the measurement into refusals.
    unshed = ("--max-queue-ms", "0")
    with contextlib.ExitStack() as stack:
        servers = {
            "this": stack.enter_context(server(args.bundle, logs, *unshed)),
            "python": stack.enter_context(
                server(args.bundle, logs, *unshed, "--scoring-path", "python")
            ),
            "model": stack.enter_context(bare_server(args.bundle, logs, "model")),
            "echo": stack.enter_context(bare_server(args.bundle, logs, "echo")),
        }
        for label, command in args.checkouts[:-1]:  # the baseline checkout, when given
            servers[label] = stack.enter_context(
                server(args.bundle, logs, *unshed, command=command)
            )
        targets = [
            ("this server, 100 candidate_ids + full context", "this", ids),
            (f"this server, pre-built {layout} features matrix", "this", matrices),
            ("this server --scoring-path python, 100 candidate_ids", "python", ids),
            *((f"{label} server, 100 candidate_ids", label, ids) for label, _ in
              args.checkouts[:-1]),
            (f"bare grpc.aio handler: parse {layout} floats, call model.so (the ceiling)", "model",
             matrices),
            ("bare grpc.aio echo (the transport floor)", "echo", ids),
        ]  # fmt: skip
        streams = [
            ("unary Score, 16 in flight", None),
            ("ScoreStream, 16 streams, 1 message each in flight", (16, 1)),
            ("ScoreStream, 1 stream, 16 messages in flight", (1, 16)),
        ]
        runs: dict[str, list[ceiling.Run]] = {label: [] for label, _, _ in targets}
        stream_runs: dict[str, list[ceiling.Run]] = {label: [] for label, _ in streams}
        this = servers["this"]
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", file=sys.stderr, flush=True)
            for label, name, payloads in targets:
                running = servers[name]
                runs[label].append(
                    ceiling.unary(running.target, running.pid, payloads, args.seconds)
                )
            for label, shape in streams:
                stream_runs[label].append(
                    ceiling.unary(this.target, this.pid, ids, args.seconds)
                    if shape is None
                    else ceiling.streamed(this.target, this.pid, ids, args.seconds, *shape)
                )
        if args.profile is not None:
            profiles = [
                (label, profiled(args.profile / f"{name}.txt", this.pid, args.seconds, run))
                for label, name, run in (
                    ("unary Score", "unary",
                     lambda: ceiling.unary(this.target, this.pid, ids, args.seconds)),
                    ("ScoreStream, 16 streams", "stream",
                     lambda: ceiling.streamed(this.target, this.pid, ids, args.seconds, 16, 1)),
                )
            ]  # fmt: skip
        paths: dict[str, list[dict[str, Timings]]] = {"this": [], "python": []}
        for round_ in range(args.rounds):
            print(f"server_time_us round {round_ + 1} of {args.rounds}", file=sys.stderr)
            for name, series in paths.items():
                stub = grpc_stub(stack, servers[name].target)
                series.append(server_times(stub, requests, args))
    print(
        f"The ceiling: Score at {ceiling.IN_FLIGHT} in flight, one grpc.aio client, "
        f"{args.rounds} interleaved rounds of {args.seconds:g}s (medians over rounds)\n"
    )
    print(ceiling.HEADER)
    for label, _, _ in targets:
        print(ceiling.run_row(label, runs[label]))
    ours, python, model, echo = (runs[targets[i][0]] for i in (0, 2, -2, -1))
    print(
        "\nRatios (median over rounds of each round's ratio): server CPU per call, this server "
        f"/ ceiling {ceiling.ratio(ours, model, cpu=True):.2f}x (goal <= 1.15x), / echo "
        f"{ceiling.ratio(ours, echo, cpu=True):.2f}x, python path / ceiling "
        f"{ceiling.ratio(python, model, cpu=True):.2f}x; throughput, this server / ceiling "
        f"{ceiling.ratio(ours, model, cpu=False):.2f}x (goal >= 0.9x), / echo "
        f"{ceiling.ratio(ours, echo, cpu=False):.2f}x\n"
    )
    print("ScoreStream against unary Score on this server (100 candidate_ids, same rounds)\n")
    print(ceiling.HEADER)
    for label, _ in streams:
        print(ceiling.run_row(label, stream_runs[label]))
    if args.profile is not None:
        print(f"py-spy on this server (Python frames, 250 Hz, --nonblocking) during one more "
              f"run of each; raw files in {args.profile}\n")  # fmt: skip
        print(ceiling.profile_table(profiles) + "\n")
    print_server_times(paths["this"], paths["python"], args.rounds)


SERVER_TIME_SERIES = {
    "score100": "Score, 100 candidate_ids + full context",
    "score1000": "Score, 1000 candidate_ids + full context",
    "recommend": "Recommend k=3 over the whole catalog, tracked sessions",
}


def server_times(
    stub: pb_grpc.RecommenderStub, requests: Requests, args: SimpleNamespace
) -> dict[str, Timings]:
    """One round of SERVER_TIME_SERIES on one server, one call in flight."""
    _, recommend = session_rpcs(stub, requests, args.sessions)
    return {
        "score100": sequential_score(stub, requests, 100, args.requests, packed=True),
        "score1000": sequential_score(stub, requests, 1000, args.requests, packed=True),
        "recommend": recommend,
    }


def print_server_times(
    native: list[dict[str, Timings]], python: list[dict[str, Timings]], rounds: int
) -> None:
    """server_time_us per series, native and python path pooled over the rounds, and the
    median over rounds of each round's p50 ratio; then the growth per extra candidate."""
    print(
        f"\nserver_time_us (us), one call in flight, {rounds} interleaved rounds: this server "
        "(native scoring path) and --scoring-path python\n"
    )
    print(
        "| series | native p50 | p99 | p99.9 | max | python p50 | p99 | p99.9 | max | "
        "python / native (p50) | calls per round |"
    )
    print("|---|" + "---:|" * 10)

    def pooled(series: list[dict[str, Timings]], key: str) -> npt.NDArray[np.float64]:
        return np.concatenate([np.asarray(r[key].server_us) for r in series])

    def stats(values: npt.NDArray[np.float64]) -> str:
        p50, p99, p999 = np.percentile(values, [50, 99, 99.9])
        return f"{p50:.0f} | {p99:.0f} | {p999:.0f} | {values.max():.0f}"

    for key, label in SERVER_TIME_SERIES.items():
        ratio = np.median(
            [np.median(p[key].server_us) / np.median(n[key].server_us)
             for n, p in zip(native, python, strict=True)]
        )  # fmt: skip
        print(
            f"| {label} | {stats(pooled(native, key))} | {stats(pooled(python, key))} | "
            f"{ratio:.2f}x | {len(native[0][key].server_us)} |"
        )
    for name, series in (("native", native), ("python", python)):
        slope = np.median(pooled(series, "score1000")) - np.median(pooled(series, "score100"))
        print(
            f"\n{name}: {slope / 900:.3f} us per extra candidate (Score 100 -> 1000, p50)", end=""
        )
    print("\n")


def profiled(out: Path, pid: int, seconds: float, run: Callable[[], object]) -> Path:
    """Runs `run` while py-spy records the process `pid` into `out` (raw format)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SettingError("--profile needs py-spy (pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    duration = str(max(1, int(seconds)))
    command = [spy, "record", "--pid", str(pid), "--duration", duration, "--rate", "250",
               "--format", "raw", "--nonblocking", "--output", str(out)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as spying:
        run()
        spying.wait()
    return out


def grpc_stub(stack: contextlib.ExitStack, target: str) -> pb_grpc.RecommenderStub:
    """A blocking stub on a channel that closes with the stack."""
    return pb_grpc.RecommenderStub(stack.enter_context(grpc.insecure_channel(target)))


def main() -> int:
    parser = baseline_parser("python -m loadtest.serverbench", __doc__)
    parser.add("--requests", integer(1), "2000", "per sequential series")
    parser.add("--seconds", number(positive=True), "8", "per concurrent series")
    parser.add("--sessions", integer(10), "300", "shoppers per store")
    parser.add("--quick", boolean, "false", "a fifth of the work (smoke run)")
    parser.add("--parts", comma_list(choice(*TABLES)), ",".join(TABLES[:-1]), "tables to print")
    parser.add("--ceiling", boolean, "false",
               "print only the ceiling side by side (same as --parts ceiling): this server, a "
               "bare model-call handler and a bare echo; ScoreStream vs unary")  # fmt: skip
    parser.add("--profile", optional_path, "",
               "with --ceiling: record this server with py-spy (raw files in this directory) "
               "during one more unary and one more ScoreStream run, and print where the "
               "samples went")  # fmt: skip
    parser.add("--rounds", integer(1), "1",
               "with --baseline-dir: alternate the two checkouts this many times (score, "
               "sessions)")  # fmt: skip
    args = SimpleNamespace(**parser.parse())
    args.checkouts = [(label, command) for label, command in
                      checkouts(args.baseline_dir, "-m", "server")]  # fmt: skip
    if args.ceiling:
        args.parts = ("ceiling",)
    if args.quick:
        args.requests, args.seconds, args.sessions = args.requests // 5, args.seconds / 4, 60
    requests = Requests(load_product_ids(args.bundle / "catalog.csv"))
    logs = Path(tempfile.mkdtemp(prefix="reco-serverbench-"))
    print(
        f"`python -m loadtest.serverbench {' '.join(sys.argv[1:])}` on {os.cpu_count()} CPUs, "
        f"load average before {os.getloadavg()[0]:.2f}; server logs in {logs}\n"
    )
    tables = {
        "score": score_tables,
        "sessions": session_tables,
        "layouts": layout_tables,
        "cost": cost_tables,
        "ceiling": ceiling_tables,
    }
    for part in args.parts:
        tables[part](args, requests, logs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m loadtest.serverbench", main))
