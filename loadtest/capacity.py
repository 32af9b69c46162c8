"""Capacity search: raise the offered rate step by step until the SLO breaks, then bisect."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Detail = TypeVar("Detail")

# Why the search stopped.
STOP_SLO = "slo breached"
STOP_GENERATOR = "generator saturated"  # the client, not the server, became the limit
STOP_MAX_RATE = "max rate reached"


@dataclass(frozen=True)
class StepOutcome(Generic[Detail]):
    """One rate tried: whether the SLO held and whether the generator kept up."""

    rate_rps: float
    passed: bool
    saturated: bool
    detail: Detail


@dataclass(frozen=True)
class SearchPlan:
    """Rates to try: start, start+step, ... up to max_rps; then `bisect` halvings of the gap.

    confirm: a rate that breaks is re-run up to this many times and counts as broken only if
    every try breaks (one stall of a noisy machine should not end the search).
    """

    start_rps: float
    step_rps: float
    max_rps: float
    bisect: int = 0
    confirm: int = 0
    min_gap_rps: float = 1.0

    def __post_init__(self) -> None:
        if not self.start_rps > 0:
            raise ValueError(f"capacity start must be > 0 requests/s, got {self.start_rps}")
        if not self.step_rps > 0:
            raise ValueError(f"capacity step must be > 0 requests/s, got {self.step_rps}")
        if self.max_rps < self.start_rps:
            raise ValueError(
                f"capacity max ({self.max_rps}) must be >= capacity start ({self.start_rps})"
            )
        if self.bisect < 0:
            raise ValueError(f"capacity bisect must be >= 0, got {self.bisect}")
        if self.confirm < 0:
            raise ValueError(f"capacity confirm must be >= 0, got {self.confirm}")


@dataclass
class CapacityResult(Generic[Detail]):
    """Every step tried, in order, and the highest rate at which the SLO held."""

    steps: list[StepOutcome[Detail]] = field(default_factory=list)
    best_rps: float | None = None
    first_breach_rps: float | None = None
    stop_reason: str = STOP_MAX_RATE


def search_capacity(
    run_step: Callable[[float], StepOutcome[Detail]], plan: SearchPlan
) -> CapacityResult[Detail]:
    """Runs steps through run_step(rate) and returns the highest rate whose SLO held.

    Linear steps until a step breaches the SLO (confirmed by plan.confirm re-runs) or max_rps
    is passed; then plan.bisect midpoints between the last rate that held and the first that
    did not. A step where the generator saturated ends the search: higher rates would measure
    the client, not the server, so best_rps is then a lower bound.
    """
    result: CapacityResult[Detail] = CapacityResult()

    def attempt(rate: float) -> StepOutcome[Detail]:
        for _ in range(1 + plan.confirm):
            outcome = run_step(rate)
            result.steps.append(outcome)
            if outcome.passed:
                break
        if outcome.passed and (result.best_rps is None or rate > result.best_rps):
            result.best_rps = rate
        return outcome

    rate = plan.start_rps
    while rate <= plan.max_rps:
        outcome = attempt(rate)
        if not outcome.passed:
            result.first_breach_rps = rate
            result.stop_reason = STOP_SLO
            break
        if outcome.saturated:
            result.stop_reason = STOP_GENERATOR
            return result
        rate += plan.step_rps
    else:
        return result

    low, high = result.best_rps, result.first_breach_rps
    if low is None or high is None:
        return result  # the very first rate breached: nothing to bisect
    for _ in range(plan.bisect):
        middle = round((low + high) / 2)
        if high - low <= plan.min_gap_rps or middle in (low, high):
            break
        outcome = attempt(middle)
        if outcome.passed:
            low = middle
            if outcome.saturated:
                result.stop_reason = STOP_GENERATOR
                break
        else:
            high = middle
            result.first_breach_rps = middle
    return result
