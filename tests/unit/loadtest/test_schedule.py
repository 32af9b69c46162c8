"""Arrival schedules: counts, spacing, ramps, Poisson arrivals and the split over workers."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.schedule import RateSchedule, intended_times, worker_share


def test_constant_rate_sends_rate_times_duration_evenly_spaced() -> None:
    times = intended_times(RateSchedule.constant(100.0, duration_s=2.0, warmup_s=0.5))
    assert len(times) == 250
    assert times[0] == 0.0
    np.testing.assert_allclose(np.diff(times), 0.01)
    assert times[-1] < 2.5


def test_ramp_rate_rises_and_total_is_the_integral() -> None:
    schedule = RateSchedule(start_rps=100.0, end_rps=300.0, duration_s=10.0, warmup_s=1.0)
    times = intended_times(schedule)
    # 100/s for 1 s of warm-up, then a mean of 200/s for 10 s.
    assert len(times) == 100 + 2000
    assert np.all(np.diff(times) > 0)
    gaps = np.diff(times[times > 1.0])
    # Instantaneous rate = 1/gap: near 100/s just after the warm-up, near 300/s at the end.
    assert 1 / gaps[0] == pytest.approx(100, rel=0.02)
    assert 1 / gaps[-1] == pytest.approx(300, rel=0.02)
    assert schedule.rate_at(6.0) == pytest.approx(200.0)


def test_ramp_down_to_zero_stays_inside_the_run() -> None:
    schedule = RateSchedule(start_rps=50.0, end_rps=0.0, duration_s=4.0)
    times = intended_times(schedule)
    assert len(times) == 100  # the triangle's area: 50 * 4 / 2
    assert times.max() < 4.0


def test_poisson_arrivals_are_reproducible_with_the_expected_count() -> None:
    schedule = RateSchedule.constant(500.0, duration_s=20.0, arrival="poisson")
    first, again = intended_times(schedule, seed=3), intended_times(schedule, seed=3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, intended_times(schedule, seed=4))
    # 10,000 expected; a Poisson count has standard deviation 100.
    assert abs(len(first) - 10_000) < 500
    gaps = np.diff(first)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.1)  # exponential: std == mean


def test_worker_shares_partition_the_schedule() -> None:
    times = intended_times(RateSchedule.constant(90.0, duration_s=1.0))
    shares = [worker_share(times, w, 4) for w in range(4)]
    assert sorted(np.concatenate(shares).tolist()) == times.tolist()
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_rps": -1.0, "end_rps": 1.0, "duration_s": 1.0}, "start_rps"),
        ({"start_rps": 0.0, "end_rps": 0.0, "duration_s": 1.0}, "both 0"),
        ({"start_rps": 1.0, "end_rps": 1.0, "duration_s": 0.0}, "duration_s"),
        ({"start_rps": 1.0, "end_rps": float("nan"), "duration_s": 1.0}, "end_rps"),
        ({"start_rps": 1.0, "end_rps": 1.0, "duration_s": 1.0, "arrival": "burst"}, "arrival"),
    ],
)
def test_bad_schedules_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateSchedule(**kwargs)  # type: ignore[arg-type]


def test_worker_index_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"worker must be in 0\.\.1"):
        worker_share(np.zeros(4), 2, 2)
