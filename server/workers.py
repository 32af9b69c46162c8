"""Several server processes on one port (SO_REUSEPORT), under a parent that never imports gRPC."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess

from server.settings import Settings

log = logging.getLogger(__name__)

# A worker that dies this soon after starting is broken (bad bundle, port taken), not unlucky:
# restarting it in a loop would only hide the error.
MIN_HEALTHY_SECONDS = 10.0
# Native libraries must not start their own thread pools in every worker; the model is scored
# on the calling thread anyway.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker_main(settings: Settings, index: int) -> None:
    """Runs one server process; the model is loaded here, after the spawn."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s",
    )
    from server.app import run  # noqa: PLC0415 - import gRPC only in the child

    run(settings)


def supervise(settings: Settings) -> int:
    """Starts settings.workers processes and keeps them running until SIGTERM/SIGINT.

    gRPC is not fork-safe, so workers are spawned (fresh interpreters), and this parent never
    imports grpc. Metrics of all workers are aggregated by the parent on --metrics-port.
    """
    os.environ.update(SINGLE_THREAD_ENV)
    metrics_dir = tempfile.mkdtemp(prefix="reco-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # Workers must not serve metrics themselves; the parent serves the aggregate.
    worker_settings = replace(settings, metrics_port=-1)
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_worker_main, args=(worker_settings, index), name=f"worker-{index}"
        )
        process.start()
        return process

    received: list[int] = []

    def record(signum: int, _frame: object) -> None:
        # Only note it: the loop below forwards it. A handler that signals or reaps processes
        # itself can interrupt that same work in the main thread.
        received.append(signum)

    def forward(signum: int) -> None:
        if signum != signal.SIGHUP:
            stopping.set()
        for process in workers.values():
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    if settings.metrics_port >= 0:
        from server.metrics import serve_metrics  # noqa: PLC0415 - after PROMETHEUS_MULTIPROC_DIR

        serve_metrics(settings.metrics_port, settings.host)
    started = {}
    workers: dict[int, BaseProcess] = {}
    for index in range(settings.workers):
        workers[index] = start(index)
        started[index] = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, record)
    log.info("started %d workers on %s", settings.workers, settings.address)
    exit_code = 0
    try:
        while workers:
            while received:
                forward(received.pop(0))
            for index, process in list(workers.items()):
                process.join(timeout=0.2)
                if process.exitcode is None:
                    continue
                del workers[index]
                if stopping.is_set():
                    continue
                lived = time.monotonic() - started[index]
                if lived < MIN_HEALTHY_SECONDS:
                    log.error("worker-%d exited with %s after %.1fs; stopping the server",
                              index, process.exitcode, lived)  # fmt: skip
                    exit_code = 2
                    forward(signal.SIGTERM)
                    continue
                log.warning("worker-%d died (exit %s); restarting it", index, process.exitcode)
                workers[index] = start(index)
                started[index] = time.monotonic()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("all workers stopped")
    return exit_code
