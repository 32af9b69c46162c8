"""Several server processes on one port (SO_REUSEPORT), under a parent that never imports gRPC:
crashed workers are restarted with capped exponential backoff, healthy ones are never touched.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

from reco.settings import SettingError
from server.core.errors import Unavailable
from server.endpoints import for_worker, parse_endpoint
from server.settings import ADMIN_OFF, Settings

log = logging.getLogger(__name__)

# Restart delays after a crash: doubling from the first up to the cap, so a worker that keeps
# crashing costs little CPU while the healthy ones serve, and is retried at least every 30 s.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
# A worker that has served this long since its last crash starts its backoff anew.
STABLE_SECONDS = 60.0
# The server gives up (exit 2) only when no worker is serving and every worker has failed this
# many starts in a row without ever reporting SERVING: the configuration cannot serve at all
# (a bundle that does not load, a port taken), and restarting forever would only hide it.
FAILED_STARTS_TO_GIVE_UP = 3
EXIT_GAVE_UP = 2
POLL_SECONDS = 0.2
# Native libraries must not start their own thread pools in every worker; the model is scored
# on the calling thread anyway.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def backoff_seconds(crashes: int) -> float:
    """The delay before restarting a worker after its `crashes`-th crash in a row (>= 1)."""
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, crashes - 1)))


@dataclass
class Slot:
    """One worker position and its history; the process in it is replaced after a crash."""

    index: int
    process: BaseProcess | None = None
    ready: Event | None = None
    serving_since: float | None = None
    crashes: int = 0  # in a row, reset after STABLE_SECONDS of serving
    failed_starts: int = 0  # crashes in a row before reporting SERVING
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def serving(self) -> bool:
        """Its process is alive and has reported SERVING."""
        return self.serving_since is not None and self.process is not None


def gives_up(slots: list[Slot]) -> bool:
    """No worker serves, and every one has failed FAILED_STARTS_TO_GIVE_UP starts in a row."""
    return not any(slot.serving for slot in slots) and all(
        slot.failed_starts >= FAILED_STARTS_TO_GIVE_UP for slot in slots
    )


def worker_settings(settings: Settings, index: int) -> Settings:
    """A worker's settings: no metrics listener of its own (the parent serves the aggregate)
    and its own admin listener (each worker holds its own models)."""
    admin = settings.admin_address
    if admin not in ("", ADMIN_OFF):
        admin = for_worker(parse_endpoint(admin), index).address
    return replace(settings, metrics_port=-1, admin_address=admin)


def _worker_main(settings: Settings, index: int, ready: Event) -> None:
    """Runs one server process; the model is loaded here, after the spawn."""
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s",
    )
    from server.app import run  # noqa: PLC0415 - import gRPC only in the child

    try:
        run(settings, on_serving=ready.set)
    except (SettingError, Unavailable) as exc:
        logging.getLogger("server").error("%s", exc)
        sys.exit(EXIT_GAVE_UP)


class Supervisor:
    """Starts the workers, restarts crashed ones after their backoff, forwards signals."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.slots = [Slot(index) for index in range(settings.workers)]
        self.stopping = False
        self.received: list[int] = []

    def start(self, slot: Slot) -> None:
        """Spawns the slot's worker process."""
        slot.ready = self.context.Event()
        slot.process = self.context.Process(
            target=_worker_main,
            args=(worker_settings(self.settings, slot.index), slot.index, slot.ready),
            name=f"worker-{slot.index}",
        )
        slot.process.start()
        slot.serving_since = None
        slot.restart_at = None
        if slot.process.pid is not None:
            slot.pids.append(slot.process.pid)
        log.info("started worker-%d (pid %s)", slot.index, slot.process.pid)

    def record(self, signum: int, _frame: object) -> None:
        """Signal handler: only note it; the loop forwards it (a handler that signals or reaps
        processes itself can interrupt that same work in the main thread)."""
        self.received.append(signum)

    def forward(self, signum: int) -> None:
        """Sends a signal to every live worker; anything but SIGHUP also stops the server."""
        if signum != signal.SIGHUP:
            self.stopping = True
        for slot in self.slots:
            process = slot.process
            if process is not None and process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    def run(self) -> int:
        """Supervises until every worker has stopped; returns the exit code."""
        for slot in self.slots:
            self.start(slot)
        exit_code = 0
        while any(s.process is not None or s.restart_at is not None for s in self.slots):
            while self.received:
                self.forward(self.received.pop(0))
            sentinels = [s.process.sentinel for s in self.slots if s.process is not None]
            if sentinels:
                wait(sentinels, timeout=POLL_SECONDS)
            else:  # every worker is waiting for its restart
                time.sleep(POLL_SECONDS)
            now = time.monotonic()
            for slot in self.slots:
                self._check(slot, now)
            if not self.stopping and gives_up(self.slots):
                log.error(
                    "no worker has become SERVING in %d starts each; stopping the server "
                    "(the workers' log lines above say why)", FAILED_STARTS_TO_GIVE_UP,
                )  # fmt: skip
                exit_code = EXIT_GAVE_UP
                self.forward(signal.SIGTERM)
            if self.stopping:
                for slot in self.slots:
                    slot.restart_at = None  # no restarts while stopping
        return exit_code

    def _check(self, slot: Slot, now: float) -> None:
        process = slot.process
        if process is None:
            if slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                self.start(slot)
            return
        if process.exitcode is None:
            if slot.serving_since is None and slot.ready is not None and slot.ready.is_set():
                slot.serving_since = now
                slot.failed_starts = 0
                log.info("worker-%d (pid %s) is SERVING", slot.index, process.pid)
            elif slot.serving_since is not None and now - slot.serving_since >= STABLE_SECONDS:
                slot.crashes = 0
            return
        process.join()
        slot.process = None
        if self.stopping:
            return
        slot.crashes += 1
        if slot.serving_since is None:
            slot.failed_starts += 1
        delay = backoff_seconds(slot.crashes)
        slot.restart_at = now + delay
        slot.serving_since = None
        log.warning(
            "worker-%d (pid %s) exited with %s (%d in a row%s); restarting it in %.1fs, "
            "%d other worker(s) serving",
            slot.index, process.pid, process.exitcode, slot.crashes,
            ", before SERVING" if slot.failed_starts else "", delay,
            sum(other.serving for other in self.slots),
        )  # fmt: skip


def supervise(settings: Settings) -> int:
    """Starts settings.workers processes and keeps them running until SIGTERM/SIGINT.

    gRPC is not fork-safe, so workers are spawned (fresh interpreters), and this parent never
    imports grpc. Metrics of all workers are aggregated by the parent on --metrics-port.
    """
    os.environ.update(SINGLE_THREAD_ENV)
    metrics_dir = tempfile.mkdtemp(prefix="reco-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    supervisor = Supervisor(settings)
    try:
        if settings.metrics_port >= 0:
            from server.metrics import serve_metrics  # noqa: PLC0415 - after the env is set

            serve_metrics(settings.metrics_port, settings.host)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, supervisor.record)
        log.info("starting %d workers on %s", settings.workers, settings.address)
        exit_code = supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("all workers stopped")
    return exit_code
