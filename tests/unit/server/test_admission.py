"""Admission budgets: a slot is given back on every way out, and each budget refuses alone."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from server.core.errors import Overloaded
from server.metrics import Metrics
from server.transport.admission import Admission, Kind


def make() -> tuple[Admission, CollectorRegistry]:
    registry = CollectorRegistry()
    return Admission(max_in_flight=2, max_open_streams=1, metrics=Metrics(registry)), registry


def gauge(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("reco_in_flight_requests", {"kind": kind})


def test_slots_are_given_back_on_return_and_on_error() -> None:
    admission, registry = make()
    with admission.unary.slot():
        assert admission.unary.used == 1 and gauge(registry, "unary") == 1
    with pytest.raises(KeyError), admission.unary.slot():
        raise KeyError("boom")
    assert admission.unary.used == 0 and gauge(registry, "unary") == 0


def test_a_full_budget_refuses_naming_its_limit_and_counts_it() -> None:
    admission, registry = make()
    with admission.unary.slot(), admission.unary.slot():
        with pytest.raises(Overloaded, match="limit of 2 requests in flight"):
            admission.unary.slot().__enter__()
        assert admission.unary.used == 2  # the refused call took nothing
    assert registry.get_sample_value("reco_rejected_requests_total", {"reason": "unary_limit"}) == 1
    assert admission.unary.used == 0


def test_streams_have_their_own_budget() -> None:
    admission, _ = make()
    with admission.budget(Kind.STREAM).slot():
        with pytest.raises(Overloaded, match="limit of 1 open streams"):
            admission.stream.slot().__enter__()
        with admission.unary.slot(), admission.unary.slot():  # unary calls are unaffected
            pass


def test_full_for_tracks_how_long_no_slot_was_free() -> None:
    admission, _ = make()
    assert admission.unary.full_for(1e9) == 0.0
    with admission.unary.slot(), admission.unary.slot():
        since = admission.unary.full_since
        assert since is not None and admission.unary.full_for(since + 3) == pytest.approx(3)
    assert admission.unary.full_since is None


@pytest.mark.parametrize("where", ["before the await", "at the await", "after it"])
def test_a_cancelled_task_gives_its_slot_back_at_any_point(where: str) -> None:
    admission, registry = make()

    async def handler(entered: asyncio.Event, release: asyncio.Event) -> None:
        if where == "before the await":
            await asyncio.sleep(0)
        with admission.stream.slot():
            entered.set()
            await release.wait()
            if where == "after it":
                await asyncio.sleep(10)

    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(handler(entered, release))
        if where == "before the await":
            await asyncio.sleep(0)  # the task has started and waits before taking a slot
        else:
            await entered.wait()
            if where == "after it":
                release.set()
                await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert admission.stream.used == 0 and gauge(registry, "stream") == 0
