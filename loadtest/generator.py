"""The open-loop generator: runs worker processes on one shared clock and gathers their results."""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import numpy as np
import psutil

from loadtest import latency, workload
from loadtest.latency import Samples, Summary, TimeSeries
from loadtest.plan import LoadPlan
from loadtest.worker import (
    DROPPED,
    ERRORS,
    IN_FLIGHT,
    N_COUNTERS,
    OK,
    SENT,
    Message,
    WorkerResult,
    run_worker,
)

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0
# Workers start this long after the last one is ready, so they all begin on the same tick.
START_DELAY_S = 0.25
PROGRESS_INTERVAL_S = 1.0
DEFAULT_MAX_CPU = 0.85
DEFAULT_MAX_SEND_LAG_MS = 5.0


class GeneratorError(RuntimeError):
    """A worker process could not run (unreachable target, crash)."""


@dataclass(frozen=True)
class Saturation:
    """When the generator itself counts as the bottleneck."""

    max_cpu: float = DEFAULT_MAX_CPU  # share of one core per worker
    max_send_lag_ms: float = DEFAULT_MAX_SEND_LAG_MS  # median lateness of sends


@dataclass
class RunResult:
    """One run: the plan, every sample, the measured-window summary and the client's health."""

    plan: LoadPlan
    started_at: str
    samples: Samples  # warm-up included
    summary: Summary  # measured window only
    series: TimeSeries
    cpu_per_worker: list[float]
    setup_errors: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    saturated: bool = False
    target_info: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary (samples are summarised, not listed)."""
        return {
            "started_at": self.started_at,
            "plan": self.plan.describe(),
            "target_info": self.target_info,
            "summary": self.summary.as_dict(),
            "client": {
                "cpu_per_worker": self.cpu_per_worker,
                "saturated": self.saturated,
                "warnings": self.warnings,
                "session_setup_errors": self.setup_errors,
            },
            "time_series": self.series.as_dict(),
        }


def client_warnings(
    summary: Summary, cpu_per_worker: list[float], setup_errors: dict[str, int], limits: Saturation
) -> tuple[list[str], bool]:
    """Warnings about the client side of a run, and whether the generator was saturated."""
    warnings: list[str] = []
    saturated = False
    for index, cpu in enumerate(cpu_per_worker):
        if cpu > limits.max_cpu:
            saturated = True
            warnings.append(
                f"generator worker {index} used {cpu:.0%} of a core (limit {limits.max_cpu:.0%}):"
                " the client may be the bottleneck; add --workers or lower the rate"
            )
    # A typical request leaving late means the generator cannot keep the pace (saturated);
    # only the tail leaving late is usually a stall of the whole machine: worth a warning.
    lag = summary.send_lag_ms
    if np.isfinite(lag.p50) and lag.p50 > limits.max_send_lag_ms:
        saturated = True
        warnings.append(
            f"generator fell behind schedule: median send lag {lag.p50:.2f} ms > "
            f"{limits.max_send_lag_ms:g} ms; latencies include that client delay"
        )
    elif np.isfinite(lag.p99) and lag.p99 > limits.max_send_lag_ms:
        warnings.append(
            f"some requests left late: p99 send lag {lag.p99:.2f} ms > "
            f"{limits.max_send_lag_ms:g} ms (a stall of the client or the machine); "
            "their latencies include it"
        )
    c = summary.counts
    if c.dropped:
        warnings.append(
            f"{c.dropped} requests dropped by the concurrency cap: the server did not keep up "
            "(or raise --concurrency)"
        )
    if c.unfinished:
        warnings.append(f"{c.unfinished} requests never finished")
    if setup_errors:
        detail = ", ".join(f"{k} x{v}" for k, v in setup_errors.items())
        warnings.append(f"session setup (TrackEvent before the run) failed: {detail}")
    return warnings, saturated


@dataclass
class _Progress:
    """Prints one line per interval: elapsed, phase, counts, rate and the workers' CPU."""

    plan: LoadPlan
    counters: Any
    processes: list[Any]
    start: float
    out: TextIO | None
    last_sent: int = 0
    last_time: float = 0.0
    cpu_probes: list[psutil.Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_time = self.start
        for process in self.processes:
            try:
                probe = psutil.Process(process.pid)
                probe.cpu_percent(None)  # the first call only starts the measurement
                self.cpu_probes.append(probe)
            except psutil.Error:
                continue

    def _total(self, column: int) -> int:
        return sum(self.counters[w * N_COUNTERS + column] for w in range(self.plan.workers))

    def tick(self) -> None:
        now = time.perf_counter()
        elapsed = now - self.start
        sent = self._total(SENT)
        rate = (sent - self.last_sent) / max(now - self.last_time, 1e-9)
        self.last_sent, self.last_time = sent, now
        cpu = []
        for probe in self.cpu_probes:
            try:
                cpu.append(probe.cpu_percent(None))
            except psutil.Error:
                continue
        schedule = self.plan.schedule
        phase = "warm-up" if elapsed < schedule.warmup_s else "measure"
        line = (
            f"[{max(elapsed, 0.0):6.1f}/{schedule.total_s:.0f}s {phase}] "
            f"target {schedule.rate_at(max(elapsed, 0.0)):.0f}/s  sent {sent} ({rate:.0f}/s)  "
            f"ok {self._total(OK)}  err {self._total(ERRORS)}  "
            f"dropped {self._total(DROPPED)}  in-flight {self._total(IN_FLIGHT)}  "
            f"client cpu {'/'.join(f'{c:.0f}%' for c in cpu) or '?'}"
        )
        if self.out is not None:
            print(line, file=self.out, flush=True)


def run_load(
    plan: LoadPlan,
    limits: Saturation | None = None,
    progress: TextIO | None = sys.stderr,
    target_info: Callable[[str], dict[str, str]] | None = None,
) -> RunResult:
    """Runs the plan with plan.workers processes and returns the merged result.

    progress: where the progress line goes (None: silent). target_info: asked once before the
    run for what the target serves (e.g. probe.model_info).
    """
    limits = limits or Saturation()
    info = target_info(plan.target) if target_info else {}
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    # spawn, not fork: grpc's C core must not be forked with live state, and each worker
    # builds its own event loop and channels from scratch.
    ctx = mp.get_context("spawn")
    counters = ctx.RawArray("q", plan.workers * N_COUNTERS)
    messages: Any = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.RawValue("d", 0.0)
    processes = [
        ctx.Process(
            target=run_worker,
            args=(plan, index, counters, messages, go, start_at),
            name=f"loadtest-worker-{index}",
            daemon=True,
        )
        for index in range(plan.workers)
    ]
    for process in processes:
        process.start()
    try:
        _wait_ready(messages, processes)
        # time.perf_counter is CLOCK_MONOTONIC on Linux: one clock for every process.
        start_at.value = time.perf_counter() + START_DELAY_S
        go.set()
        results = _collect(
            messages, processes, _Progress(plan, counters, processes, start_at.value, progress)
        )
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)
    return _assemble(plan, results, limits, started_at, info)


def _wait_ready(messages: Any, processes: list[Any]) -> None:
    ready: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(ready) < len(processes):
        try:
            kind, index, payload = messages.get(timeout=1.0)
        except queue.Empty:
            _check_alive(processes, ready)
            if time.monotonic() > deadline:
                raise GeneratorError(
                    f"workers not ready after {READY_TIMEOUT_S:g} s (connecting, seeding sessions)"
                ) from None
            continue
        if kind == "failed":
            raise GeneratorError(f"worker {index} failed before the run: {payload}")
        ready.add(index)


def _collect(messages: Any, processes: list[Any], progress: _Progress) -> list[WorkerResult]:
    results: dict[int, WorkerResult] = {}
    next_tick = progress.start + PROGRESS_INTERVAL_S
    while len(results) < len(processes):
        timeout = max(0.05, next_tick - time.perf_counter())
        try:
            message: Message = messages.get(timeout=timeout)
        except queue.Empty:
            _check_alive(processes, set(results))
        else:
            kind, index, payload = message
            if kind == "failed":
                raise GeneratorError(f"worker {index} failed: {payload}")
            results[index] = payload
        if time.perf_counter() >= next_tick:
            progress.tick()
            next_tick += PROGRESS_INTERVAL_S
    return [results[i] for i in sorted(results)]


def _check_alive(processes: list[Any], finished: set[int]) -> None:
    for index, process in enumerate(processes):
        if index not in finished and not process.is_alive():
            raise GeneratorError(f"worker {index} exited with code {process.exitcode}")


def _assemble(
    plan: LoadPlan,
    results: list[WorkerResult],
    limits: Saturation,
    started_at: str,
    info: dict[str, str],
) -> RunResult:
    samples = latency.merge(r.samples for r in results)
    measured = latency.measured_window(samples, plan.schedule.warmup_s)
    summary = latency.summarize(measured, plan.schedule.duration_s, workload.KINDS)
    setup_errors: dict[str, int] = {}
    for result in results:
        for name, count in result.setup_errors.items():
            setup_errors[name] = setup_errors.get(name, 0) + count
    cpu = [r.cpu_fraction for r in results]
    warnings, saturated = client_warnings(summary, cpu, setup_errors, limits)
    return RunResult(
        plan=plan,
        started_at=started_at,
        samples=samples,
        summary=summary,
        series=latency.time_series(samples),
        cpu_per_worker=cpu,
        setup_errors=setup_errors,
        warnings=warnings,
        saturated=saturated,
        target_info=info,
    )
