"""Catalog-scale benchmark: generate, train, compile and serve at each catalog size; one table.

    python -m loadtest.scalebench --sizes 1000,10000,100000,1000000 [--rows 100000] [--out DIR]

For each size, in order: `python -m training generate --products N`, `python -m training
train`, `python -m compiler build`, each timed with its peak resident memory (the child's own
rusage, from wait4); the bundle's size on disk; a server started on the bundle (seconds to
SERVING, RSS once idle); Score (100 candidate ids) and Recommend (tracked sessions of views and
a cart add, k=3) one call in flight, their server_time_us and round trips; and, with
--recall, `python -m server.recallbench` on held-out sessions. Everything runs as the
documented commands do, as subprocesses: this tool imports neither training nor the server.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np

from loadtest.products import read_product_ids
from loadtest.server_process import ManagedServer, ServerSpec
from loadtest.serverbench import Requests, Timings, sequential_score, session_rpcs
from loadtest.startbench import rss_mib
from reco.settings import (
    SettingsParser,
    boolean,
    comma_list,
    integer,
    optional_path,
    required_path,
    run_cli,
)
from reco.v1 import recommender_pb2_grpc as pb_grpc

KEY_ENV = "RECO_BUNDLE_KEY_FILE"


def shell_words(text: str) -> tuple[str, ...]:
    """Flags for another command, split as a shell would ("--sessions 300")."""
    return tuple(shlex.split(text))


@dataclass
class Step:
    """One command's wall time and peak resident memory."""

    seconds: float
    peak_mib: float


@dataclass
class SizeResult:
    """Everything measured at one catalog size."""

    products: int
    steps: dict[str, Step] = field(default_factory=dict)
    bundle_mib: float = 0.0
    affinity_mib: float = 0.0
    start_seconds: float = 0.0
    rss_mib: float = 0.0
    score: Timings | None = None
    recommend: Timings | None = None
    recall: str = "not run"


def run_measured(argv: list[str], log: Path) -> Step:
    """Runs a command to completion (output to log); raises RuntimeError with the log's tail
    when it fails. Peak memory is the child's own (wait4), not this process's."""
    started = time.perf_counter()
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{shlex.join(argv)} exited {process.returncode}:\n{tail}")
    return Step(seconds, usage.ru_maxrss / 1024)


def directory_mib(path: Path, prefix: str = "") -> float:
    """Size of the files in a directory (those whose names start with prefix), MiB."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()
               and p.name.startswith(prefix)) / 2**20  # fmt: skip


def measure_size(n: int, args: SimpleNamespace, work: Path) -> SizeResult:
    """Builds and serves one catalog size; see the module docstring."""
    py = sys.executable
    data, bundle, log = work / f"data-{n}", work / f"bundle-{n}", work / f"size-{n}.log"
    result = SizeResult(products=n)
    result.steps["generate"] = run_measured(
        [py, "-m", "training", "generate", "--products", str(n), "--rows", str(args.rows),
         "--seed", str(args.seed), "--out", str(data)], log)  # fmt: skip
    result.steps["train"] = run_measured(
        [py, "-m", "training", "train", "--data", str(data), "--out", str(bundle),
         *args.train_args], log)  # fmt: skip
    result.steps["compile"] = run_measured([py, "-m", "compiler", "build", str(bundle)], log)
    result.bundle_mib = directory_mib(bundle)
    result.affinity_mib = directory_mib(bundle, "affinity_")
    spec = ServerSpec(bundle=bundle.resolve(), ready_timeout_s=600.0,
                      extra_args=("--watch-seconds", "0", *args.server_args))  # fmt: skip
    started = time.perf_counter()
    with ManagedServer(spec, work / f"server-{n}.log") as running:
        result.start_seconds = time.perf_counter() - started
        time.sleep(args.idle_seconds)  # a benchmark: let start-up's garbage settle first
        result.rss_mib = rss_mib(running.pid)
        requests = Requests(read_product_ids(bundle / "catalog.csv"), seed=args.seed)
        with grpc.insecure_channel(running.target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            result.score = sequential_score(stub, requests, 100, args.requests, packed=True)
            _, result.recommend = session_rpcs(stub, requests, args.sessions)
        result.rss_mib = max(result.rss_mib, rss_mib(running.pid))
    if args.recall:
        recall_log = work / f"recall-{n}.txt"
        run_measured([py, "-m", "server.recallbench", "--bundle", str(bundle), "--data",
                      str(data), *args.recall_args], recall_log)  # fmt: skip
        lines = recall_log.read_text().splitlines()
        result.recall = "\n".join(line for line in lines if line.startswith("|"))
    return result


def _percentiles(values: list[float]) -> str:
    p50, p99 = np.percentile(np.asarray(values), [50, 99])
    return f"{p50:.0f} / {p99:.0f}"


def print_table(results: list[SizeResult]) -> None:
    """The scale table, one row per size (Markdown)."""
    print("\n| products | generate s / peak MiB | train s / peak MiB | compile s / peak MiB | "
          "bundle MiB (affinity) | start to SERVING s | server RSS MiB | Score 100 server us "
          "p50 / p99 | round trip us p50 / p99 | Recommend server us p50 / p99 | round trip "
          "us p50 / p99 |")  # fmt: skip
    print("|---:|" + "---:|" * 10)
    for r in results:
        steps = " | ".join(f"{s.seconds:.1f} / {s.peak_mib:.0f}" for s in r.steps.values())
        assert r.score is not None and r.recommend is not None
        print(
            f"| {r.products:,} | {steps} | {r.bundle_mib:.1f} ({r.affinity_mib:.2f}) | "
            f"{r.start_seconds:.2f} | {r.rss_mib:.0f} | {_percentiles(r.score.server_us)} | "
            f"{_percentiles(r.score.round_trip_us)} | "
            f"{_percentiles(r.recommend.server_us)} | "
            f"{_percentiles(r.recommend.round_trip_us)} |"
        )


def main() -> int:
    parser = SettingsParser(
        "python -m loadtest.scalebench", __doc__ or "", env_prefix="RECO_BENCH_"
    )
    parser.add("--sizes", comma_list(integer(1)), "1000,10000,100000,1000000", "catalog sizes")
    parser.add("--rows", integer(1), "100000", "impression rows generated at every size")
    parser.add("--seed", integer(), "7", "generator seed")
    parser.add("--requests", integer(10), "2000", "Score calls per size")
    parser.add("--sessions", integer(10), "300", "tracked shoppers per size (4 Recommends each)")
    parser.add("--idle-seconds", integer(0), "2", "idle time after SERVING before reading RSS")
    parser.add("--out", optional_path, "", "working directory (default: a new temporary one)")
    parser.add(
        "--bundle-key-file",
        required_path,
        "artifacts/.bundle-key",
        "the bundle signing key training, compiler and server use (made if missing)",
    )
    parser.add("--train-args", shell_words, "", "more `training train` flags (one string)")
    parser.add("--server-args", shell_words, "", "more server flags (one string)")
    parser.add("--recall", boolean, "false", "also run server.recallbench at every size")
    parser.add("--recall-args", shell_words, "", "more server.recallbench flags (one string)")
    args = SimpleNamespace(**parser.parse())
    work = args.out or Path(tempfile.mkdtemp(prefix="reco-scalebench-"))
    work.mkdir(parents=True, exist_ok=True)
    key = args.bundle_key_file.resolve()
    if not key.exists():
        run_measured([sys.executable, "-m", "training", "keygen", "--out", str(key)],
                     work / "keygen.log")  # fmt: skip
    os.environ[KEY_ENV] = str(key)  # training, the compiler and the server all read it
    print(f"`python -m loadtest.scalebench {shlex.join(sys.argv[1:])}` on {os.cpu_count()} CPUs, "
          f"load average before {os.getloadavg()[0]:.2f}; files and logs in {work}")  # fmt: skip
    results = []
    for n in args.sizes:
        results.append(measure_size(n, args, work))
        print(f"size {n:,} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    print_table(results)
    for r in results:
        if r.recall != "not run":
            print(f"\nrecall at {r.products:,} products (python -m server.recallbench):\n")
            print(r.recall)
    print(f"\nload average after: {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} (1 / 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m loadtest.scalebench", main))
