"""Capacity search decisions with a fake step runner (no load is sent)."""

from __future__ import annotations

import pytest

from loadtest.capacity import (
    STOP_GENERATOR,
    STOP_MAX_RATE,
    STOP_SLO,
    SearchPlan,
    StepOutcome,
    search_capacity,
)


class FakeServer:
    """Holds the SLO up to `limit` requests/s; the client saturates above `client_limit`."""

    def __init__(self, limit: float, client_limit: float = float("inf")) -> None:
        self.limit = limit
        self.client_limit = client_limit
        self.rates: list[float] = []

    def __call__(self, rate: float) -> StepOutcome[str]:
        self.rates.append(rate)
        return StepOutcome(rate, rate <= self.limit, rate > self.client_limit, f"run@{rate}")


def test_steps_up_until_the_slo_breaks_then_bisects() -> None:
    server = FakeServer(limit=730)
    result = search_capacity(server, SearchPlan(200, 200, 5000, bisect=3))
    # 200, 400, 600 hold; 800 breaks; then 700 (holds), 750 (breaks), 725 (holds).
    assert server.rates == [200, 400, 600, 800, 700, 750, 725]
    assert result.best_rps == 725
    assert result.first_breach_rps == 750
    assert result.stop_reason == STOP_SLO
    assert [s.detail for s in result.steps][-1] == "run@725"


def test_without_bisection_the_last_step_that_held_wins() -> None:
    result = search_capacity(FakeServer(limit=650), SearchPlan(100, 250, 5000))
    assert result.best_rps == 600
    assert result.first_breach_rps == 850


def test_every_rate_holding_stops_at_the_maximum() -> None:
    server = FakeServer(limit=10_000)
    result = search_capacity(server, SearchPlan(100, 100, 300, bisect=2))
    assert server.rates == [100, 200, 300]
    assert result.best_rps == 300
    assert result.first_breach_rps is None
    assert result.stop_reason == STOP_MAX_RATE


def test_first_rate_breaking_means_nothing_held() -> None:
    result = search_capacity(FakeServer(limit=50), SearchPlan(100, 100, 1000, bisect=4))
    assert result.best_rps is None
    assert len(result.steps) == 1
    assert result.stop_reason == STOP_SLO


def test_a_saturated_client_stops_the_search_with_a_lower_bound() -> None:
    server = FakeServer(limit=5000, client_limit=250)
    result = search_capacity(server, SearchPlan(100, 100, 1000))
    assert server.rates == [100, 200, 300]
    assert result.best_rps == 300
    assert result.stop_reason == STOP_GENERATOR


def test_a_breach_is_confirmed_by_re_runs_before_it_counts() -> None:
    outcomes = iter([True, False, True, False, False])  # 100 ok; 200 flaky, ok; 300 broken

    def flaky(rate: float) -> StepOutcome[None]:
        return StepOutcome(rate, next(outcomes), False, None)

    result = search_capacity(flaky, SearchPlan(100, 100, 1000, confirm=1))
    assert [s.rate_rps for s in result.steps] == [100, 200, 200, 300, 300]
    assert result.best_rps == 200
    assert result.first_breach_rps == 300


def test_bisection_stops_when_the_gap_is_closed() -> None:
    server = FakeServer(limit=100)
    result = search_capacity(server, SearchPlan(100, 1, 1000, bisect=5))
    assert server.rates == [100, 101]
    assert result.best_rps == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 100, 1000), "start"),
        ((100, 0, 1000), "step"),
        ((500, 100, 100), "max"),
        ((100, 100, 1000, -1), "bisect"),
        ((100, 100, 1000, 0, -1), "confirm"),
    ],
)
def test_bad_plans_are_rejected(args: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchPlan(*args)  # type: ignore[arg-type]
