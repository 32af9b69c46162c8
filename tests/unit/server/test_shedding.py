"""Queueing time in gRPC's core, from its call counters: the estimate, drops, and refusals."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from server.metrics import Metrics
from server.transport.shedding import CoreCounters, QueueMonitor


class FakeCore(CoreCounters):
    """Counters set by the test: calls started and ended in the core so far."""

    def __init__(self) -> None:
        super().__init__(())
        self.started = 0
        self.ended = 0

    def read(self) -> tuple[int, int]:
        return self.started, self.ended


def monitor(max_queue_ms: float = 50) -> tuple[QueueMonitor, FakeCore, CollectorRegistry]:
    registry = CollectorRegistry()
    core = FakeCore()
    return QueueMonitor(core, max_queue_ms / 1000, Metrics(registry)), core, registry


def accept(queue: QueueMonitor, n: int = 1) -> None:
    queue.accepted += n


def test_a_call_accepted_at_once_waited_nothing() -> None:
    queue, core, _ = monitor()
    core.started = 5
    queue.sample(now=10.0)
    accept(queue, 5)  # every arrival counted so far is in Python
    core.started = 6  # one more arrived after the sample, and is accepted next
    accept(queue)
    assert queue.waited(now=10.001) == 0.0
    assert queue.refusal(now=10.001) is None


def test_the_wait_is_interpolated_between_the_samples_around_the_arrival() -> None:
    queue, core, _ = monitor()
    for step in range(10):  # 100 arrivals every 10 ms, nothing accepted
        core.started += 100
        queue.sample(now=1.0 + step * 0.01)
    accept(queue, 250)  # 200 were counted at 1.01, 300 at 1.02: call 250 came at about 1.015
    assert queue.waited(now=1.10) == pytest.approx(0.085)
    assert queue.waited(now=1.10, arrival=100) == pytest.approx(0.1)  # the first sample
    assert queue.queued == 1000


def test_calls_that_queued_too_long_are_refused_naming_the_limit() -> None:
    queue, core, registry = monitor(max_queue_ms=50)
    for step in range(30):  # 100 arrivals every 10 ms, none accepted: 300 ms of backlog
        core.started += 100
        queue.sample(now=step * 0.01)
    assert queue.shedding  # above 50 ms since t=0.06, for more than 100 ms
    accept(queue, 50)
    assert queue.refusal(now=0.02) is None  # the 50th arrival, counted at t=0, waited 20 ms
    refusal = queue.refusal(now=0.3)  # shedding refuses calls older than half the limit
    assert str(refusal) == "server is at its limit of 50 ms of queueing; retry later"
    assert registry.get_sample_value("reco_rejected_requests_total", {"reason": "queue"}) == 1


def test_a_short_burst_is_absorbed_and_returning_overload_is_refused_at_once() -> None:
    queue, core, _ = monitor(max_queue_ms=50)
    core.started = 100
    queue.sample(now=0.0)
    for now in (0.06, 0.09, 0.12, 0.15):  # the head has waited over 50 ms, for under 100 ms
        queue.sample(now=now)
        assert not queue.shedding
    accept(queue, 100)  # drained: shedding never started
    queue.finished = core.ended = 100
    queue.sample(now=0.16)
    assert not queue.shedding
    core.started = 200
    for step in range(20):
        queue.sample(now=1.0 + step * 0.01)
    assert queue.shedding  # sustained: 190 ms over the limit
    accept(queue, 95)
    queue.finished = core.ended = 195
    queue.sample(now=1.3)
    assert queue.shedding  # 5 calls of 300 ms: still above half the limit
    accept(queue, 5)
    queue.finished = core.ended = 200
    queue.sample(now=1.31)
    assert not queue.shedding
    core.started = 300
    queue.sample(now=1.4)
    queue.sample(now=1.46)
    assert queue.shedding  # back within a second: no new interval to wait


def test_no_refusal_without_a_backlog_in_the_core_or_when_disabled() -> None:
    queue, core, _ = monitor()
    core.started = core.ended = 100  # everything arrived has ended: the core holds nothing
    queue.accepted = queue.finished = 100
    queue.sample(now=0.0)
    assert queue.queued == 0 and queue.refusal() is None
    off = QueueMonitor(None, 0.05, Metrics(CollectorRegistry()))
    assert not off.enabled and off.refusal() is None


def test_calls_ended_in_the_core_unseen_count_as_dropped_and_as_departures() -> None:
    queue, core, registry = monitor()
    core.started = 100
    queue.sample(now=0.0)
    accept(queue, 60)
    queue.finished = 60
    core.ended = 60 + 30  # Python answered 60; the core dropped 30 while they queued
    queue.sample(now=0.01)
    assert queue.dropped == 30 and queue.queued == 10
    assert registry.get_sample_value("reco_cancelled_calls_total", {"stage": "core"}) == 30
    # departures = 60 accepted + 30 dropped: the next accepted call is the 91st arrival
    accept(queue)
    assert queue.waited(now=0.05) == pytest.approx(0.05)


def test_a_call_python_holds_is_never_counted_as_dropped() -> None:
    queue, core, _ = monitor()
    core.started = 10
    accept(queue, 10)
    core.ended = 10  # their statuses are sent, their tasks not yet done
    queue.sample(now=0.0)
    assert queue.dropped == 0
    queue.finished = 10
    queue.sample(now=0.01)
    assert queue.dropped == 0


def test_old_samples_are_trimmed() -> None:
    queue, core, _ = monitor()
    for step in range(2000):
        core.started += 1
        accept(queue)
        queue.sample(now=step * 0.01)
    assert len(queue._times) < 1000  # a bounded window of a few horizons
    assert queue._times[-1] == pytest.approx(19.99)
