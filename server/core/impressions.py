"""The impression log: what each response showed and each click, queued off the request path."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from server.core.errors import InvalidArgument
from server.core.sessions import Event, EventType

log = logging.getLogger(__name__)

IMPRESSIONS = "impressions"
EVENTS = "events"
KINDS = (IMPRESSIONS, EVENTS)
# Events the log keeps (clicks, and purchases that may follow one).
LOGGED_EVENTS = {EventType.RECOMMENDATION_CLICK, EventType.PURCHASE}
# A sink that keeps failing is retried no sooner than this (seconds), doubling up to the cap.
RETRY_SECONDS, RETRY_CAP_SECONDS = 0.5, 30.0


@dataclass(slots=True)  # not frozen: a frozen init costs ~2 us more, on the request path
class Impression:
    """One logged response. Built on the request path from references only (no copies): the
    writer thread turns it into columns; nothing changes it after.

    candidate_ids: the scored candidates' ids, or an array of ids that `candidate_index` picks
    them from (a Recommend's catalog); features: the exact float32 rows scored, one per
    candidate; shown: positions into the candidates, in slot order, with their propensities.
    """

    request_id: str
    time_ms: int
    rpc: str
    session_id: str
    customer_id: str
    model_version: str
    variant: str
    policy: str
    cold_start: bool
    candidate_ids: Any
    candidate_index: npt.NDArray[np.int64] | None
    scores: npt.NDArray[np.float64]
    features: npt.NDArray[np.float32]
    shown: npt.NDArray[np.int64]
    propensities: npt.NDArray[np.float64]
    explored: bool = False

    def ids(self) -> list[str]:
        """The candidates' ids in candidate order."""
        if self.candidate_index is None:
            return [str(p) for p in self.candidate_ids]
        return [str(p) for p in np.asarray(self.candidate_ids)[self.candidate_index]]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """A recommendation click or a purchase; known = this process served its request_id.
    time_ms is the client's clock (the event's), received_ms the server's (the impression's)."""

    kind: str
    event_id: str
    session_id: str
    request_id: str
    product_id: str
    time_ms: int
    known: bool
    variant: str
    received_ms: int = 0


class Sink(Protocol):
    """Where complete batches go (server/core/parquet_sink.py: rotating columnar files)."""

    def write(self, kind: str, records: Sequence[Any]) -> str:
        """Writes one batch as one complete unit (a file renamed into place); returns its name."""
        ...

    def prune(self) -> int:
        """Applies retention and size limits; returns how many units were deleted."""
        ...


class LogCounters(Protocol):
    """What the log reports (server.metrics implements it with Prometheus counters)."""

    def count_written(self, kind: str, count: int) -> None: ...
    def count_dropped(self, kind: str, count: int) -> None: ...
    def count_sink_error(self, kind: str) -> None: ...
    def count_orphan_click(self) -> None: ...


class NoCounters:
    """Counters for a log nobody scrapes (tests, benchmarks)."""

    def count_written(self, kind: str, count: int) -> None:
        """Ignored."""

    def count_dropped(self, kind: str, count: int) -> None:
        """Ignored."""

    def count_sink_error(self, kind: str) -> None:
        """Ignored."""

    def count_orphan_click(self) -> None:
        """Ignored."""


@dataclass
class VariantCounts:
    """Online A/B counts of one variant: responses, shown slots, clicks on them, sessions."""

    requests: int = 0
    shown: int = 0
    clicks: int = 0
    sessions: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ABCounts:
    """VariantCounts at one moment, with the number of sessions."""

    requests: int
    shown: int
    clicks: int
    sessions: int


@dataclass(frozen=True)
class LogLimits:
    """Queue capacity (records held until they are in a complete file), rotation interval and
    how many recent request ids clicks are matched against."""

    queue_capacity: int = 10_000
    interval_seconds: float = 10.0
    recent_requests: int = 100_000
    max_ab_sessions: int = 1_000_000


class ImpressionLog:
    """Queues impressions and events on the request path, in O(1) and without locks or I/O; a
    writer thread writes complete batches through the sink, one file per interval and kind.

    A record leaves its queue only once it is in a complete file, so the queue's capacity
    bounds both memory and what a killed process can lose. A full queue drops the new record
    (counted); a failing sink keeps the records queued and is retried with backoff (counted),
    so requests never wait on the log and never fail because of it.
    """

    def __init__(
        self,
        sink: Sink | None,
        limits: LogLimits | None = None,
        counters: LogCounters | None = None,
    ) -> None:
        self.sink = sink
        self.limits = limits or LogLimits()
        self.counters: LogCounters = counters or NoCounters()
        self._queues: dict[str, deque[Any]] = {kind: deque() for kind in KINDS}
        self._writing = dict.fromkeys(KINDS, 0)  # popped by the writer, not yet in a file
        self._prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)
        # request id -> (variant, shown product ids, session id) of the most recent responses
        self._recent: dict[str, tuple[str, tuple[str, ...], str]] = {}
        self.ab: dict[str, VariantCounts] = {}
        # Recommend runs on threads with a remote session store: the counts take a lock
        # (uncontended, ~0.1 us); the queues need none (deque appends are atomic).
        self._counting = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._retry_delay = RETRY_SECONDS

    # -- the request path ------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether responses are written anywhere (a sink is configured)."""
        return self.sink is not None

    def new_request_id(self) -> str:
        """A process-unique id: a random per-process prefix and a counter (no syscall)."""
        return f"{self._prefix}-{next(self._ids):x}"

    def record(self, impression: Impression, shown_ids: tuple[str, ...]) -> None:
        """Queues one response (or counts it dropped) and remembers what it showed."""
        recent = self._recent
        recent[impression.request_id] = (impression.variant, shown_ids, impression.session_id)
        if len(recent) > self.limits.recent_requests:
            recent.pop(next(iter(recent)), None)  # the oldest; another thread may race
        with self._counting:
            counts = self.ab.get(impression.variant)
            if counts is None:
                counts = self.ab[impression.variant] = VariantCounts()
            counts.requests += 1
            counts.shown += len(shown_ids)
            if len(counts.sessions) < self.limits.max_ab_sessions:
                counts.sessions.add(impression.session_id)
        self._put(IMPRESSIONS, impression)

    def snapshot(self) -> dict[str, ABCounts]:
        """A consistent copy of the online A/B counts (for the metrics scrape)."""
        with self._counting:
            return {name: ABCounts(c.requests, c.shown, c.clicks, len(c.sessions))
                    for name, c in self.ab.items()}  # fmt: skip

    def check_click(self, event: Event, prefix: str = "event") -> None:
        """Refuses a click on a product its (known) response did not show, or from another
        session than the response's; an unknown request id (expired, or served by another
        process) is accepted and counted as an orphan."""
        if event.type is not EventType.RECOMMENDATION_CLICK:
            return
        served = self._recent.get(event.request_id)
        if served is not None and event.session_id != served[2]:
            raise InvalidArgument(
                f"{prefix}.request_id",
                event.request_id,
                "names a response served to another session",
            )
        if served is not None and event.product_id not in served[1]:
            raise InvalidArgument(
                f"{prefix}.product_id",
                event.product_id,
                f"was not shown by request {event.request_id[:64]!r}",
            )

    def event(self, event: Event) -> None:
        """Queues a tracked (not duplicate) click or purchase; other events are not logged."""
        if event.type not in LOGGED_EVENTS:
            return
        served = self._recent.get(event.request_id) if event.request_id else None
        variant = served[0] if served is not None else ""
        if event.type is EventType.RECOMMENDATION_CLICK:
            if served is None:
                self.counters.count_orphan_click()
            else:
                with self._counting:
                    counts = self.ab.get(variant)
                    if counts is not None:
                        counts.clicks += 1
        logged = LoggedEvent(
            event.type.value, event.event_id, event.session_id, event.request_id,
            event.product_id, event.timestamp_ms, served is not None, variant,
            time.time_ns() // 1_000_000,
        )  # fmt: skip
        self._put(EVENTS, logged)

    def _put(self, kind: str, record: Any) -> None:
        queue = self._queues[kind]
        if self.sink is None:
            return
        if len(queue) + self._writing[kind] >= self.limits.queue_capacity:
            self.counters.count_dropped(kind, 1)
            return
        queue.append(record)

    # -- the writer thread -----------------------------------------------------------------

    def start(self) -> ImpressionLog:
        """Starts the writer thread (nothing to do without a sink)."""
        if self.sink is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
            self._thread.start()
        return self

    def queued(self, kind: str) -> int:
        """Records not yet in a complete file."""
        return len(self._queues[kind]) + self._writing[kind]

    def flush(self) -> None:
        """Writes whatever is queued now (the writer thread calls it every interval)."""
        if self.sink is None:
            return
        for kind in KINDS:
            self._write(kind)
        try:
            self.sink.prune()
        except OSError as exc:
            log.warning("impression log: pruning old files failed: %s", exc)

    def close(self, timeout: float = 10.0) -> None:
        """Stops the writer after a last flush (graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._retry_at = 0.0
        self.flush()

    def _run(self) -> None:
        interval = self.limits.interval_seconds
        next_flush = time.monotonic() + interval
        while not self._stop.is_set():
            self._wake.wait(min(0.2, interval))
            self._wake.clear()
            now = time.monotonic()
            half_full = any(
                len(q) >= self.limits.queue_capacity // 2 for q in self._queues.values()
            )
            if (now >= next_flush or half_full) and now >= self._retry_at:
                self.flush()
                next_flush = now + interval

    def _write(self, kind: str) -> None:
        queue = self._queues[kind]
        n = len(queue)
        if n == 0 or self.sink is None:
            return
        self._writing[kind] = n  # first, so the capacity check never sees fewer than held
        batch = [queue.popleft() for _ in range(n)]
        try:
            self.sink.write(kind, batch)
        except Exception as exc:  # any sink failure: keep the batch, count it, retry later
            queue.extendleft(reversed(batch))
            self._writing[kind] = 0
            self.counters.count_sink_error(kind)
            self._retry_at = time.monotonic() + self._retry_delay
            log.warning(
                "impression log: writing %d %s failed (%s); kept queued, retrying in %.1f s",
                n, kind, exc, self._retry_delay,
            )  # fmt: skip
            self._retry_delay = min(RETRY_CAP_SECONDS, self._retry_delay * 2)
            return
        self._writing[kind] = 0
        self._retry_delay = RETRY_SECONDS
        self.counters.count_written(kind, n)
