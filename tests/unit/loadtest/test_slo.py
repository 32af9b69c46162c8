"""The SLO verdict: bounds, NaN handling, exit codes and the printed line."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest import latency
from loadtest.latency import OK, Samples
from loadtest.slo import SloConfig, evaluate

INVALID_ARGUMENT = 3


def summary_of(latencies_ms: list[float], candidates: int, failures: int = 0) -> latency.Summary:
    n = len(latencies_ms) + failures
    samples = Samples.allocate(np.arange(n, dtype=float), np.zeros(n, dtype=np.int8))
    samples.sent_s[:] = samples.intended_s
    samples.done_s[:] = samples.intended_s + np.array(latencies_ms + [1.0] * failures) / 1e3
    samples.status[:] = [OK] * len(latencies_ms) + [INVALID_ARGUMENT] * failures
    samples.predictions[:] = candidates
    return latency.summarize(samples, float(n), ["score"])


def test_fast_enough_passes_every_bound() -> None:
    verdict = evaluate(summary_of([5.0] * 99 + [20.0], candidates=100), SloConfig())
    assert verdict.passed
    assert verdict.exit_code == 0
    assert verdict.line().startswith("SLO PASS: p99 per prediction 0.05 ms < 1 ms: ok")


def test_per_prediction_bound_breaks_with_small_batches() -> None:
    # The same 5 ms requests carrying 2 candidates each cost 2.5 ms per prediction.
    verdict = evaluate(summary_of([5.0] * 100, candidates=2), SloConfig())
    assert not verdict.passed
    assert verdict.exit_code == 1
    failing = [c.name for c in verdict.checks if not c.passed]
    assert failing == ["p99 per prediction"]
    assert "BREACHED" in verdict.line()


def test_request_bound_and_error_rate() -> None:
    summary = summary_of([30.0] * 100, candidates=100, failures=1)
    verdict = evaluate(summary, SloConfig(p99_request_ms=25.0, max_error_rate=0.001))
    assert {c.name: c.passed for c in verdict.checks} == {
        "p99 per prediction": True,
        "p99 request latency": False,
        "error rate": False,
    }


def test_zero_error_rate_bound_accepts_exactly_zero_errors() -> None:
    check = evaluate(summary_of([1.0] * 10, 10), SloConfig(max_error_rate=0.0)).checks[-1]
    assert check.passed
    assert "<= 0" in check.describe()


def test_nothing_measured_never_passes() -> None:
    verdict = evaluate(summary_of([], candidates=100, failures=5), SloConfig())
    assert not verdict.passed
    assert all(not c.passed for c in verdict.checks)


def test_disabled_bounds_are_not_checked() -> None:
    slo = SloConfig(p99_per_prediction_ms=None, p99_request_ms=None)
    verdict = evaluate(summary_of([500.0] * 10, candidates=1), slo)
    assert [c.name for c in verdict.checks] == ["error rate"]
    assert verdict.passed
    assert slo.describe() == "error rate <= 0.001"


def test_negative_bound_is_rejected() -> None:
    with pytest.raises(ValueError, match="p99_request_ms"):
        SloConfig(p99_request_ms=-1.0)


def test_verdict_as_dict_lists_every_check() -> None:
    document = evaluate(summary_of([5.0] * 10, 100), SloConfig()).as_dict()
    assert document["passed"] is True
    assert [c["name"] for c in document["checks"]] == [  # type: ignore[index]
        "p99 per prediction",
        "p99 request latency",
        "error rate",
    ]
