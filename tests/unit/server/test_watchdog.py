"""The watchdog: health follows whether the server can admit work."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from server.metrics import Metrics
from server.transport.admission import Admission
from server.transport.watchdog import Watchdog

STALL = 2.0


def make() -> tuple[Watchdog, Admission, list[bool]]:
    metrics = Metrics(CollectorRegistry())
    admission = Admission(max_in_flight=1, max_open_streams=1, metrics=metrics)
    reported: list[bool] = []

    async def set_serving(serving: bool) -> None:
        reported.append(serving)

    return Watchdog(admission.unary, set_serving, STALL, metrics), admission, reported


def test_a_pinned_unary_budget_turns_health_off_and_on_again() -> None:
    watchdog, admission, reported = make()

    async def main() -> None:
        with admission.unary.slot():
            since = admission.unary.full_since
            assert since is not None
            await watchdog.check(since + 1.0, lag=0.0)  # full, but not for long yet
            assert reported == []
            await watchdog.check(since + STALL, lag=0.0)
            assert reported == [False]
            assert "unary slots have been taken" in (watchdog.reason(since + STALL, 0.0) or "")
            await watchdog.check(since + STALL + 1, lag=0.0)  # still pinned: no repeat
        await watchdog.check(since + STALL + 2, lag=0.0)  # the slot was given back
        assert reported == [False, True]

    asyncio.run(main())


def test_a_stalled_loop_keeps_health_off_for_the_stall_period_after_it() -> None:
    watchdog, _, reported = make()

    async def main() -> None:
        await watchdog.check(100.0, lag=0.5)  # a short delay is no stall
        assert reported == []
        await watchdog.check(110.0, lag=STALL + 0.5)
        assert reported == [False]
        await watchdog.check(110.0 + STALL / 2, lag=0.0)  # recent stall: still off
        assert reported == [False]
        await watchdog.check(110.0 + STALL + 0.1, lag=0.0)
        assert reported == [False, True]

    asyncio.run(main())


def test_the_watchdog_runs_on_its_loop_until_cancelled() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    reported: list[bool] = []

    async def set_serving(serving: bool) -> None:
        reported.append(serving)

    watchdog = Watchdog(Admission(1, 1, metrics).unary, set_serving, STALL, metrics)

    async def main() -> None:
        task = asyncio.create_task(watchdog.run())
        await asyncio.sleep(0.35)
        task.cancel()

    asyncio.run(main())
    assert reported == []  # a healthy loop and a free budget: nothing to report
    lag = registry.get_sample_value("reco_event_loop_lag_seconds")
    assert lag is not None and 0.0 <= lag < STALL  # the lag gauge is set on every tick
