"""Arrival schedules: the time each request of an open-loop run is meant to be sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Arrival = Literal["constant", "poisson"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson")


@dataclass(frozen=True)
class RateSchedule:
    """Warm-up at start_rps, then a linear ramp start_rps -> end_rps over the measured duration.

    A constant rate is a ramp whose ends are equal. Rates are requests per second over all
    worker processes together.
    """

    start_rps: float
    end_rps: float
    duration_s: float
    warmup_s: float = 0.0
    arrival: Arrival = "constant"

    def __post_init__(self) -> None:
        for name in ("start_rps", "end_rps", "warmup_s"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not np.isfinite(self.duration_s) or self.duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s!r}")
        if self.start_rps == 0 and self.end_rps == 0:
            raise ValueError("start_rps and end_rps are both 0: nothing to send")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")

    @classmethod
    def constant(
        cls, rps: float, duration_s: float, warmup_s: float = 0.0, arrival: Arrival = "constant"
    ) -> RateSchedule:
        """A fixed arrival rate."""
        return cls(rps, rps, duration_s, warmup_s, arrival)

    @property
    def total_s(self) -> float:
        """Warm-up plus the measured duration."""
        return self.warmup_s + self.duration_s

    @property
    def mean_measured_rps(self) -> float:
        """The average target rate over the measured part (the ramp's midpoint)."""
        return (self.start_rps + self.end_rps) / 2

    def expected_count(self, until_s: float | None = None) -> float:
        """How many requests the schedule sends from 0 to until_s (default: the whole run)."""
        t = self.total_s if until_s is None else until_s
        return float(self._cumulative(np.array([t]))[0])

    def rate_at(self, t_s: float) -> float:
        """The target rate at t_s seconds from the start of the run."""
        if t_s <= self.warmup_s:
            return self.start_rps
        fraction = min(1.0, (t_s - self.warmup_s) / self.duration_s)
        return self.start_rps + (self.end_rps - self.start_rps) * fraction

    def _cumulative(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        r0, r1, w, d = self.start_rps, self.end_rps, self.warmup_s, self.duration_s
        in_warmup = np.minimum(t, w)
        s = np.clip(t - w, 0.0, d)
        return r0 * in_warmup + r0 * s + (r1 - r0) * s * s / (2 * d)

    def _inverse_cumulative(self, count: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The time at which the cumulative count reaches `count` (counts within the run)."""
        r0, r1, w, d = self.start_rps, self.end_rps, self.warmup_s, self.duration_s
        warmup_count = r0 * w
        ramp_count = np.maximum(count - warmup_count, 0.0)
        a = (r1 - r0) / (2 * d)
        # Root of a*s^2 + r0*s = ramp_count written as 2c / (r0 + sqrt(r0^2 + 4ac)): stable for
        # a == 0 (constant rate) and for r0 == 0 (a ramp from zero).
        root = np.sqrt(np.maximum(r0 * r0 + 4 * a * ramp_count, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            in_ramp = w + np.where(ramp_count > 0, 2 * ramp_count / (r0 + root), 0.0)
            in_warm = count / r0 if r0 > 0 else np.zeros_like(count)
        return np.where(count <= warmup_count, in_warm, in_ramp)


def intended_times(schedule: RateSchedule, seed: int = 0) -> npt.NDArray[np.float64]:
    """Every intended send time of the run, in seconds from its start, sorted ascending.

    constant: the k-th request is due when the cumulative target count reaches k.
    poisson: a unit-rate Poisson process mapped through the cumulative count (time rescaling),
    so the gaps are exponential at the instantaneous rate; reproducible from `seed`.
    """
    total = schedule.expected_count()
    if schedule.arrival == "constant":
        counts = np.arange(int(np.ceil(total)), dtype=np.float64)
    else:
        rng = np.random.default_rng(seed)
        # Draw a little more than needed, then cut at the end of the run.
        draw = int(total + 6 * np.sqrt(total) + 16)
        counts = np.cumsum(rng.exponential(1.0, size=draw))
        while counts[-1] < total:
            more = np.cumsum(rng.exponential(1.0, size=draw)) + counts[-1]
            counts = np.concatenate([counts, more])
        counts = counts[counts < total]
    times = schedule._inverse_cumulative(counts)
    return times[times < schedule.total_s]


def worker_share(
    times: npt.NDArray[np.float64], worker: int, workers: int
) -> npt.NDArray[np.float64]:
    """The slice of a global schedule one worker process sends: every workers-th request."""
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker must be in 0..{workers - 1}, got {worker}")
    return times[worker::workers]
