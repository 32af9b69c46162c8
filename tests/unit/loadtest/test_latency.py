"""Latency bookkeeping on synthetic timings: intended-time accounting, percentiles, merging."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest import latency
from loadtest.latency import DROPPED, OK, Samples

INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4


def make_samples(
    intended: list[float],
    sent: list[float],
    done: list[float],
    status: list[int] | None = None,
    predictions: list[int] | None = None,
    server_us: list[float] | None = None,
    kind: list[int] | None = None,
) -> Samples:
    n = len(intended)
    samples = Samples.allocate(np.array(intended), np.array(kind or [0] * n, dtype=np.int8))
    samples.sent_s[:] = sent
    samples.done_s[:] = done
    samples.status[:] = status or [OK] * n
    samples.predictions[:] = predictions or [1] * n
    samples.server_us[:] = server_us or [np.nan] * n
    return samples


def test_nearest_rank_percentiles_are_observed_values() -> None:
    p = latency.percentiles(np.arange(1, 101, dtype=float))
    assert (p.p50, p.p90, p.p99, p.p99_9, p.max) == (50, 90, 99, 100, 100)
    assert p.count == 100
    assert p.mean == pytest.approx(50.5)


def test_percentiles_skip_nan_and_scale() -> None:
    p = latency.percentiles([0.001, np.nan, 0.003, 0.002], scale=1e3)
    assert p.count == 3
    assert p.p50 == pytest.approx(2.0)
    assert p.max == pytest.approx(3.0)


def test_percentiles_of_nothing_are_nan() -> None:
    p = latency.percentiles([])
    assert p.count == 0
    assert np.isnan(p.p99)


def test_latency_counts_from_the_intended_send_time_not_the_actual_one() -> None:
    # A server stalls for 100 ms: requests due every 10 ms pile up behind the first one.
    # A closed-loop client would only send after each answer and report ~1 ms per request
    # (coordinated omission); counting from the intended time shows the queueing delay.
    intended = [i * 0.010 for i in range(10)]
    sent = [0.100 + i * 0.001 for i in range(10)]  # the generator itself fell behind
    done = [s + 0.001 for s in sent]
    samples = make_samples(intended, sent, done)
    np.testing.assert_allclose(samples.latency_s, np.array(done) - np.array(intended))
    summary = latency.summarize(samples, window_s=0.1, kind_names=["score"])
    # Request i waits 101 - 9i ms: 101, 92, ..., 20. Nearest-rank p50 is the 5th smallest.
    assert summary.latency_ms.max == pytest.approx(101.0)
    assert summary.latency_ms.p50 == pytest.approx(56.0)
    # What a client timing from the actual send would have reported: 1 ms each.
    assert summary.service_ms.max == pytest.approx(1.0)
    assert summary.send_lag_ms.max == pytest.approx(100.0)  # the first request left 100 ms late


def test_per_prediction_divides_each_request_by_its_rows() -> None:
    samples = make_samples(
        intended=[0.0, 0.1, 0.2],
        sent=[0.0, 0.1, 0.2],
        done=[0.010, 0.102, 0.2005],
        predictions=[100, 10, 0],  # the third scored nothing (e.g. TrackEvent)
    )
    per_prediction = latency.per_prediction_s(samples) * 1e6
    np.testing.assert_allclose(sorted(per_prediction), [100.0, 200.0])


def test_errors_and_drops_are_counted_by_status_and_excluded_from_latency() -> None:
    samples = make_samples(
        intended=[0.0, 0.1, 0.2, 0.3, 0.4],
        sent=[0.0, 0.1, 0.2, np.nan, 0.4],
        done=[0.001, 0.101, 0.700, np.nan, 0.402],
        status=[OK, INVALID_ARGUMENT, DEADLINE_EXCEEDED, DROPPED, INVALID_ARGUMENT],
    )
    summary = latency.summarize(samples, window_s=0.5, kind_names=["score"])
    c = summary.counts
    assert (c.scheduled, c.sent, c.ok, c.errors, c.dropped) == (5, 4, 1, 3, 1)
    assert c.error_rate == pytest.approx(0.8)
    assert summary.errors_by_status == {"INVALID_ARGUMENT": 2, "DEADLINE_EXCEEDED": 1, "DROPPED": 1}
    assert summary.latency_ms.count == 1
    assert summary.latency_ms.max == pytest.approx(1.0)
    assert summary.ok_rps == pytest.approx(2.0)
    assert summary.sent_rps == pytest.approx(8.0)
    assert summary.target_rps == pytest.approx(10.0)
    # How fast each error came back; a dropped request was never answered.
    answered = summary.error_latency_ms
    assert set(answered) == {"INVALID_ARGUMENT", "DEADLINE_EXCEEDED"}
    assert answered["INVALID_ARGUMENT"].count == 2 and answered[
        "INVALID_ARGUMENT"
    ].max == pytest.approx(2.0)
    assert answered["DEADLINE_EXCEEDED"].p50 == pytest.approx(500.0)


def test_merge_orders_workers_by_intended_time_and_keeps_rows_together() -> None:
    a = make_samples([0.0, 0.2], [0.0, 0.2], [0.005, 0.203], server_us=[50, 70])
    b = make_samples([0.1, 0.3], [0.1, 0.3], [0.104, 0.306], server_us=[60, 80])
    merged = latency.merge([a, b])
    np.testing.assert_allclose(merged.intended_s, [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(merged.latency_s * 1e3, [5, 4, 3, 6])
    np.testing.assert_allclose(merged.server_us, [50, 60, 70, 80])
    assert len(latency.merge([])) == 0


def test_warmup_is_excluded_from_the_measured_window() -> None:
    samples = make_samples([0.0, 0.5, 1.0, 1.5], [0.0, 0.5, 1.0, 1.5], [0.9, 0.9, 1.001, 1.502])
    measured = latency.measured_window(samples, warmup_s=1.0)
    np.testing.assert_allclose(measured.intended_s, [1.0, 1.5])
    assert latency.summarize(measured, 1.0, ["score"]).latency_ms.max == pytest.approx(2.0)


def test_server_time_and_kinds_are_summarised_separately() -> None:
    samples = make_samples(
        intended=[0.0, 0.1, 0.2],
        sent=[0.0, 0.1, 0.2],
        done=[0.002, 0.103, 0.201],
        server_us=[120, 300, np.nan],
        predictions=[100, 200, 0],
        kind=[0, 2, 3],
    )
    summary = latency.summarize(samples, 1.0, ["score", "score-bad", "recommend", "track"])
    assert set(summary.by_kind) == {"score", "recommend", "track"}
    assert summary.server_time_us.count == 2
    assert summary.server_time_us.max == 300
    assert summary.by_kind["recommend"].per_prediction_us.p50 == pytest.approx(15.0)
    assert summary.predictions_per_s == 300


def test_time_series_buckets_by_intended_time() -> None:
    samples = make_samples(
        intended=[0.1, 0.2, 1.5, 2.7],
        sent=[0.1, 0.2, 1.5, np.nan],
        done=[0.11, 0.23, 1.501, np.nan],
        status=[OK, OK, OK, DROPPED],
    )
    series = latency.time_series(samples, bucket_s=1.0)
    assert series.bucket_start_s == [0.0, 1.0, 2.0]
    assert series.requests == [2, 1, 1]
    assert series.errors == [0, 0, 1]
    assert series.max_ms[0] == pytest.approx(30.0)
    assert np.isnan(series.p50_ms[2])


def test_status_names_cover_grpc_codes_and_markers() -> None:
    assert latency.status_name(0) == "OK"
    assert latency.status_name(14) == "UNAVAILABLE"
    assert latency.status_name(DROPPED) == "DROPPED"
    assert latency.status_name(99) == "STATUS_99"
