"""Load shedding: how long calls wait inside gRPC's core before Python sees them, and
RESOURCE_EXHAUSTED, at once and cheaply, for calls that waited longer than --max-queue-ms.

grpc.aio hands Python one call per method per event-loop turn; beyond capacity the excess
queues inside the core, invisible to any count kept in Python, until deadlines expire. The
core's own counters (channelz: calls started and ended per server) make that queue visible:
sampled every SAMPLE_SECONDS, they give the arrival count over time, and the calls that left
the queue are the ones Python accepted plus the ones the core ended unseen (cancelled while
queued). Queueing is first in, first out, so the call Python accepts as the D-th departure is
the D-th arrival: it waited at least since the first sample that had counted D arrivals.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from collections.abc import Iterable

from server.core.errors import Overloaded
from server.metrics import Metrics

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.01  # one channelz read costs about 0.15 ms here: 1.5% of a core
MIN_HORIZON_SECONDS = 2.0
# As in CoDel: shedding starts only once the queue has stayed above the limit this long, so a
# burst or a pause of the machine is absorbed; overload that returns within REENTRY_SECONDS of
# the last shedding is shed at once.
INTERVAL_SECONDS = 0.1
REENTRY_SECONDS = 1.0
# While shedding, calls that waited more than this share of the limit are refused, until the
# queue is back under it: admitted calls then wait a fraction of the limit, not all of it. It
# stays well above the sampling resolution, or noise in the estimate would refuse fresh calls
# and leave the server idle.
DRAIN_TO = 0.5


class CoreCounters:
    """Calls started and ended in gRPC's core, summed over this server's listeners.

    channelz is gRPC's own introspection of the core; grpcio exposes it to Python only through
    its cygrpc module (the grpcio-channelz service uses the same functions).
    """

    def __init__(self, server_ids: Iterable[int]) -> None:
        self.server_ids = tuple(sorted(server_ids))

    @staticmethod
    def existing_ids() -> set[int]:
        """Ids of every gRPC server of this process (take them before and after creating one
        to find its own)."""
        from grpc._cython import cygrpc  # type: ignore[attr-defined]  # noqa: PLC0415

        ids: set[int] = set()
        start = 0
        while True:
            page = json.loads(cygrpc.channelz_get_servers(start))
            for entry in page.get("server", []):
                ids.add(int(entry["ref"]["serverId"]))
            if page.get("end", True) or not ids:
                return ids
            start = max(ids) + 1

    def read(self) -> tuple[int, int]:
        """(calls started, calls ended) since the server was created."""
        from grpc._cython import cygrpc  # type: ignore[attr-defined]  # noqa: PLC0415

        started = ended = 0
        for server_id in self.server_ids:
            data = json.loads(cygrpc.channelz_get_server(server_id))["server"]["data"]
            started += int(data.get("callsStarted", 0))
            ended += int(data.get("callsSucceeded", 0)) + int(data.get("callsFailed", 0))
        return started, ended


class QueueMonitor:
    """Estimates how long the call Python just accepted waited in gRPC's core, and refuses it
    (Overloaded) beyond max_queue_seconds. Runs on the event loop thread only."""

    def __init__(
        self, core: CoreCounters | None, max_queue_seconds: float, metrics: Metrics
    ) -> None:
        self.core = core
        self.max_queue_seconds = max_queue_seconds
        self.accepted = 0  # calls of this server handed to Python, every method
        self.finished = 0  # of those, calls whose task has ended
        self.dropped = 0  # calls the core ended before Python saw them (a lower bound)
        self.queued = 0  # calls in the core not yet handed to Python, at the last sample
        self.shedding = False  # the queue has stayed above the limit for INTERVAL_SECONDS
        self._above_since: float | None = None
        self._shed_until = float("-inf")
        self._times: list[float] = []
        self._arrivals: list[int] = []  # calls started in the core, at each of _times
        self._horizon = max(MIN_HORIZON_SECONDS, 10 * max_queue_seconds)
        self._metrics = metrics
        self._rejected = metrics.rejected.labels("queue")
        self._dropped_in_core = metrics.cancelled.labels("core")

    @property
    def enabled(self) -> bool:
        """Whether calls are refused by queueing time at all."""
        return self.core is not None and self.max_queue_seconds > 0

    def sample(self, now: float | None = None) -> None:
        """Reads the core's counters once and records them."""
        if self.core is None:
            return
        now = time.monotonic() if now is None else now
        started, ended = self.core.read()
        in_python = self.accepted - self.finished
        # A call Python holds may already count as ended in the core (its status is sent,
        # its task not yet done): subtracting every call in Python keeps this a lower bound.
        dropped = max(self.dropped, ended - self.finished - in_python)
        if dropped > self.dropped:
            self._dropped_in_core.inc(dropped - self.dropped)
            self.dropped = dropped
        self.queued = max(0, started - ended - in_python)
        self._metrics.core_queued.set(self.queued)
        self._times.append(now)
        self._arrivals.append(started)
        if now - self._times[0] > 2 * self._horizon:  # trim in batches: O(1) amortised
            keep = bisect.bisect_left(self._times, now - self._horizon)
            del self._times[:keep], self._arrivals[:keep]
        self._update_shedding(now)

    def _update_shedding(self, now: float) -> None:
        # The next call to leave the queue is departure number accepted + dropped + 1.
        head = self.waited(now, self.accepted + self.dropped + 1) if self.queued else 0.0
        if head > self.max_queue_seconds:
            if self._above_since is None:
                self._above_since = now
            if now - self._above_since >= INTERVAL_SECONDS or now < self._shed_until:
                self.shedding = True
        elif head <= self.max_queue_seconds * DRAIN_TO:
            if self.shedding:
                self._shed_until = now + REENTRY_SECONDS
            self.shedding = False
            self._above_since = None

    def waited(self, now: float, arrival: int | None = None) -> float:
        """How long the `arrival`-th call (default: the one accepted last) waited in the core,
        in seconds. Arrivals leave in order, so that is the call accepted as departure number
        `arrival` (counting the calls dropped in the core); its arrival time is interpolated
        between the two samples that bracket it."""
        if arrival is None:
            arrival = self.accepted + self.dropped
        after = bisect.bisect_left(self._arrivals, arrival)
        if after == len(self._arrivals):
            return 0.0  # it arrived after the last sample
        arrived = self._times[after]
        if after > 0:
            before = after - 1
            span = self._arrivals[after] - self._arrivals[before]
            share = (arrival - self._arrivals[before]) / span
            arrived = self._times[before] + share * (arrived - self._times[before])
        return max(0.0, now - arrived)

    def refusal(self, now: float | None = None) -> Overloaded | None:
        """Overloaded for the call accepted last when the server is shedding and that call
        waited more than DRAIN_TO of the limit, else None."""
        if not (self.enabled and self.shedding):
            return None
        waited = self.waited(time.monotonic() if now is None else now)
        if waited <= self.max_queue_seconds * DRAIN_TO:
            return None
        self._rejected.inc()
        return Overloaded(round(self.max_queue_seconds * 1000), "ms of queueing")

    async def run(self) -> None:
        """Samples the core's counters until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)


def core_counters_since(before: set[int]) -> CoreCounters | None:
    """The counters of the servers created since `before` was taken, or None (with a warning)
    when this grpcio offers no channelz view."""
    try:
        new = CoreCounters.existing_ids() - before
    except (ImportError, AttributeError, ValueError, KeyError) as exc:
        log.warning("gRPC's core queue is not observable (%s): no shedding by queueing time", exc)
        return None
    if not new:
        log.warning("gRPC's core queue is not observable (channelz is off): no shedding by time")
        return None
    return CoreCounters(new)


def existing_server_ids() -> set[int]:
    """CoreCounters.existing_ids(), or an empty set when channelz cannot be read."""
    try:
        return CoreCounters.existing_ids()
    except (ImportError, AttributeError, ValueError, KeyError):
        return set()
