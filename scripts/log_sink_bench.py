"""Writer-thread cost per response of the two log sinks (Parquet file, Redis Streams XADD)."""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.core.impressions import IMPRESSIONS, Impression, ImpressionLog
from server.core.parquet_sink import ParquetSink
from server.core.redis_log import RedisSink, decode_impression, encode_impression

RESPONSES, CANDIDATES, FEATURES, ROUNDS = 500, 190, 27, 5


def main() -> None:
    """Interleaved rounds over one batch; prints medians and minima per response."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="reco-logbench-"))
    binary = shutil.which("redis-server") or "redis-server"
    server = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)  # redis-server has no readiness stream to wait on
        run(port, work)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def run(port: int, work: Path) -> None:
    log = ImpressionLog(None)
    catalog = np.array([f"PROD{i:04d}" for i in range(2000)])
    rng = np.random.default_rng(1)
    batch = [
        Impression(log.new_request_id(), 1, "Recommend", "s", "c", "v1", "A", "greedy", False,
                   catalog, rng.choice(2000, CANDIDATES, replace=False), rng.random(CANDIDATES),
                   rng.random((CANDIDATES, FEATURES)).astype(np.float32), np.arange(10),
                   np.ones(10))
        for _ in range(RESPONSES)
    ]  # fmt: skip
    parquet = ParquetSink(work / "logs")
    streams = RedisSink(f"redis://127.0.0.1:{port}/0", max_len=100_000)
    entries = [
        {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in e.items()}
        for e in map(encode_impression, batch)
    ]
    steps: dict[str, Callable[[], object]] = {
        "ParquetSink.write (a file)": lambda: parquet.write(IMPRESSIONS, batch),
        "RedisSink.write (XADD, pipelined)": lambda: streams.write(IMPRESSIONS, batch),
        "  of it: encode_impression": lambda: [encode_impression(r) for r in batch],
        "consumer: decode_impression": lambda: [decode_impression(e) for e in entries],
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    print(f"{RESPONSES} responses x {CANDIDATES} candidates x {FEATURES} features, "
          f"{ROUNDS} interleaved rounds")  # fmt: skip
    print("| step | median us per response | min |")
    print("|---|---|---|")
    for name, values in times.items():
        median, low = statistics.median(values), min(values)
        print(f"| {name} | {median / RESPONSES * 1e6:.0f} | {low / RESPONSES * 1e6:.0f} |")
    size = sum(len(v) if isinstance(v, bytes) else len(str(v)) for v in entries[0].values())
    print(f"stream entry: {size} bytes of field values per response")


if __name__ == "__main__":
    main()
