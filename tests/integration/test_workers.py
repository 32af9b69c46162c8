"""The worker supervisor on real processes: crashed workers come back with backoff while the
others keep serving; a server that cannot serve at all gives up with exit 2."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from reco import Catalog
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.servers import ROOT, RedisServer, ServerProcess, free_port, running


def worker_pids(server: ServerProcess, index: int) -> list[int]:
    """The pids the supervisor started for worker `index`, in order."""
    return [int(p) for p in re.findall(rf"started worker-{index} \(pid (\d+)\)", server.log())]


def wait_for_log(server: ServerProcess, pattern: str, count: int = 1, timeout: float = 120) -> None:
    """Until the supervisor has logged `pattern` `count` times (its log is the only record of
    which process is which worker)."""
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, server.log())) < count:
        assert server.process.poll() is None, f"the server exited:\n{server.log()}"
        assert time.monotonic() < deadline, f"no {pattern!r} in time:\n{server.log()}"
        time.sleep(0.05)  # polling the log file: no event to wait on across processes


def test_two_quick_crashes_of_one_worker_while_the_other_keeps_serving(
    bundle: Path, logs: Path, redis_server: RedisServer
) -> None:
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    request = pb.ScoreRequest(context=pb.SessionContext(current_product_id=ids[0]),
                              candidate_ids=ids[1:20])  # fmt: skip
    store = ("--session-store", redis_server.url)
    with running(bundle, *store, "--workers", "2", log_dir=logs) as srv:
        wait_for_log(srv, r"worker-\d \(pid \d+\) is SERVING", count=2)
        survivor = worker_pids(srv, 1)[0]
        outcomes: list[tuple[float, str]] = []  # (time.monotonic(), status code name)
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                with srv.channel() as channel:  # a new connection each time: any live worker
                    try:
                        pb_grpc.RecommenderStub(channel).Score(request, timeout=10)
                        outcomes.append((time.monotonic(), "OK"))
                    except grpc.RpcError as exc:
                        outcomes.append((time.monotonic(), exc.code().name))

        client = threading.Thread(target=load)
        client.start()
        kills = []
        try:
            first = worker_pids(srv, 0)[0]
            os.kill(first, signal.SIGKILL)
            kills.append(time.monotonic())
            wait_for_log(srv, r"started worker-0 \(pid \d+\)", count=2)
            replacement = worker_pids(srv, 0)[1]
            os.kill(replacement, signal.SIGKILL)  # within a second of the first crash
            kills.append(time.monotonic())
            wait_for_log(srv, r"started worker-0 \(pid \d+\)", count=3)
            third = worker_pids(srv, 0)[2]
            wait_for_log(srv, rf"worker-0 \(pid {third}\) is SERVING")
            serving_again = time.monotonic()
        finally:
            done.set()
            client.join()
        assert srv.process.poll() is None, f"the supervisor stopped:\n{srv.log()}"
        assert worker_pids(srv, 1) == [survivor]  # the healthy worker was never touched
        os.kill(survivor, 0)  # still alive
        assert kills[1] - kills[0] < 10 and "2 in a row, before SERVING" in srv.log()
        # The survivor answered all along: between the crashes and the third worker's start.
        ok_meanwhile = [
            t for t, code in outcomes if code == "OK" and kills[1] + 1 < t < serving_again
        ]
        assert ok_meanwhile, outcomes[-20:]
        # Failures only as the killed worker's connections are reset (its accepted backlog, for
        # a client that reconnects at once), and only UNAVAILABLE.
        failures = [(t, code) for t, code in outcomes if code != "OK"]
        assert all(code == "UNAVAILABLE" for _, code in failures), failures
        assert all(any(0 <= t - k < 1.0 for k in kills) for t, _ in failures), (kills, failures)
    assert srv.process.returncode == 0


def test_workers_that_never_serve_make_the_server_give_up(
    bundle: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A bundle every worker refuses: restarts with backoff, then exit 2 naming why."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "server", "--bundle", str(broken), "--workers", "2",
         "--session-store", redis_server.url, "--port", str(free_port()), "--metrics-port", "-1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no worker has become SERVING in 3 starts each" in result.stderr
    assert len(re.findall(r"started worker-0 \(pid", result.stderr)) == 3
    assert "Traceback" not in result.stderr
