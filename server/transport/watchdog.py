"""Health follows the ability to admit work: NOT_SERVING while the unary budget has had no free
slot, or the event loop has not run, for --stall-seconds; SERVING again once both recover."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from server.metrics import Metrics
from server.transport.admission import Budget

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1

SetServing = Callable[[bool], Awaitable[None]]


class Watchdog:
    """Checks the unary budget and the event loop every TICK_SECONDS.

    It runs on the loop it watches: during a stall nothing answers health checks anyway (a
    probe with a timeout sees that), and once the loop runs again the watchdog sees how late
    its tick came. A stall keeps health NOT_SERVING for stall_seconds after it ends, so a
    loop that stalls again and again never flaps back to SERVING between stalls.
    """

    def __init__(
        self, unary: Budget, set_serving: SetServing, stall_seconds: float, metrics: Metrics
    ) -> None:
        self.unary = unary
        self.set_serving = set_serving
        self.stall_seconds = stall_seconds
        self.metrics = metrics
        self.serving = True
        self.last_stall: float | None = None

    def reason(self, now: float, lag: float) -> str | None:
        """Why the server cannot admit work right now, or None when it can."""
        if lag >= self.stall_seconds:
            self.last_stall = now
            return f"the event loop stalled for {lag:.1f}s"
        pinned = self.unary.full_for(now)
        if pinned >= self.stall_seconds:
            return (
                f"all {self.unary.limit} unary slots have been taken for {pinned:.1f}s "
                "(calls waiting on a dependency?)"
            )
        if self.last_stall is not None and now - self.last_stall < self.stall_seconds:
            return "the event loop stalled less than --stall-seconds ago"
        return None

    async def check(self, now: float, lag: float) -> None:
        """One tick: updates health when the verdict changes."""
        self.metrics.loop_lag.set(lag)
        reason = self.reason(now, lag)
        if reason is not None and self.serving:
            log.warning("health NOT_SERVING: the server cannot admit work: %s", reason)
            self.serving = False
            await self.set_serving(False)
        elif reason is None and not self.serving:
            log.warning("health SERVING again: the server admits work")
            self.serving = True
            await self.set_serving(True)

    async def run(self) -> None:
        """Ticks until cancelled."""
        due = time.monotonic() + TICK_SECONDS
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            lag = max(0.0, now - due)
            due = now + TICK_SECONDS
            await self.check(now, lag)
