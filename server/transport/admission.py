"""Admission: separate budgets for unary calls and open streams, taken and released by one
context manager that every exit path (return, error, abort, client cancel, deadline) leaves."""

from __future__ import annotations

import enum
import time

from server.core.errors import Overloaded
from server.metrics import Metrics


class Kind(enum.Enum):
    """What a call holds while it runs: a unary slot, or a stream slot for its whole life."""

    UNARY = "unary"
    STREAM = "stream"


# How each budget's limit reads in a RESOURCE_EXHAUSTED message.
_UNITS = {Kind.UNARY: "requests in flight", Kind.STREAM: "open streams"}


class Budget:
    """A fixed number of slots for one kind of call. Used on the event loop thread only, so
    plain integers suffice; `full_since` is when the last slot was taken (None while one is
    free), for the watchdog that notices a budget pinned full."""

    def __init__(self, kind: Kind, limit: int, metrics: Metrics) -> None:
        self.kind = kind
        self.limit = limit
        self.used = 0
        self.full_since: float | None = None
        self._gauge = metrics.in_flight.labels(kind.value)
        self._rejected = metrics.rejected.labels(f"{kind.value}_limit")

    def slot(self) -> Slot:
        """A context manager holding one slot; entering raises Overloaded when none is free."""
        return Slot(self)

    def full_for(self, now: float) -> float:
        """Seconds the budget has had no free slot (0 while one is free)."""
        return 0.0 if self.full_since is None else now - self.full_since

    def _take(self) -> None:
        if self.used >= self.limit:
            self._rejected.inc()
            raise Overloaded(self.limit, _UNITS[self.kind])
        self.used += 1
        self._gauge.inc()
        if self.used == self.limit:
            self.full_since = time.monotonic()

    def _give(self) -> None:
        self.used -= 1
        self._gauge.dec()
        self.full_since = None


class Slot:
    """One slot of a budget, held for the duration of a with-block.

    Taking it is synchronous (no await between the check and the increment), and __exit__
    runs for every way out of the block, asyncio.CancelledError included, so a slot can never
    be taken without being given back.
    """

    __slots__ = ("_budget",)

    def __init__(self, budget: Budget) -> None:
        self._budget = budget

    def __enter__(self) -> None:
        self._budget._take()

    def __exit__(self, *exc: object) -> None:
        self._budget._give()


class Admission:
    """The budgets of one server process: --max-in-flight unary calls being handled, and
    --max-open-streams streams open, so idle streams can never starve unary traffic."""

    def __init__(self, max_in_flight: int, max_open_streams: int, metrics: Metrics) -> None:
        self.unary = Budget(Kind.UNARY, max_in_flight, metrics)
        self.stream = Budget(Kind.STREAM, max_open_streams, metrics)

    def budget(self, kind: Kind) -> Budget:
        """The budget calls of this kind take a slot from."""
        return self.unary if kind is Kind.UNARY else self.stream
