"""Comparison tables: medians over rounds and ratios against the first contender."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadtest import latency
from loadtest.compare import Contender, comparison_rows, median
from loadtest.latency import OK, Samples


def summary_with(latency_ms: float, server_us: float, n: int = 10) -> latency.Summary:
    samples = Samples.allocate(np.arange(n, dtype=float), np.zeros(n, dtype=np.int8))
    samples.sent_s[:] = samples.intended_s
    samples.done_s[:] = samples.intended_s + latency_ms / 1e3
    samples.status[:] = OK
    samples.predictions[:] = 100
    samples.server_us[:] = server_us
    return latency.summarize(samples, float(n), ["score"])


def test_ratios_are_medians_over_rounds_divided_by_the_baseline() -> None:
    rows = comparison_rows(
        {
            "compiled": [summary_with(1.0, 100), summary_with(3.0, 120), summary_with(2.0, 110)],
            "onnx": [summary_with(4.0, 300), summary_with(5.0, 330), summary_with(40.0, 900)],
        }
    )
    by_name = {row.name: row for row in rows}
    p50 = by_name["request p50"]
    assert p50.medians == {"compiled": pytest.approx(2.0), "onnx": pytest.approx(5.0)}
    assert p50.ratios["compiled"] == pytest.approx(1.0)
    assert p50.ratios["onnx"] == pytest.approx(2.5)
    assert by_name["server_time_us p50"].ratios["onnx"] == pytest.approx(3.0)
    assert by_name["ok rate"].lower_is_better is False


def test_a_baseline_of_zero_gives_no_ratio() -> None:
    rows = comparison_rows({"a": [summary_with(1.0, 1)], "b": [summary_with(2.0, 1)]})
    error_rate = next(r for r in rows if r.name == "error rate")
    assert error_rate.medians == {"a": 0.0, "b": 0.0}
    assert math.isnan(error_rate.ratios["b"])


def test_median_ignores_nan() -> None:
    assert median([1.0, float("nan"), 3.0]) == 2.0
    assert math.isnan(median([float("nan")]))


def test_contenders_parse_with_or_without_labels() -> None:
    assert Contender.parse("compiled=127.0.0.1:50051") == Contender("compiled", "127.0.0.1:50051")
    assert Contender.parse("10.0.0.2:9000") == Contender("10.0.0.2:9000", "10.0.0.2:9000")
    with pytest.raises(ValueError, match="host:port"):
        Contender.parse("onnx=nohostport")
