"""The plan of one open-loop run: everything a worker process needs, picklable."""

from __future__ import annotations

from dataclasses import dataclass, replace

from loadtest.schedule import RateSchedule
from loadtest.workload import Mix


@dataclass(frozen=True)
class LoadPlan:
    """One run against one target. Rates and the concurrency cap are totals over all workers."""

    target: str
    schedule: RateSchedule
    mix: Mix
    candidates: int
    concurrency: int
    workers: int
    channels: int
    timeout_s: float
    seed: int
    products: tuple[str, ...]
    run_id: str
    sessions_per_worker: int = 64

    def __post_init__(self) -> None:
        positive = ("candidates", "concurrency", "workers", "channels", "sessions_per_worker")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not self.products:
            raise ValueError("products: no product ids to draw candidates from")
        if self.concurrency < self.workers:
            raise ValueError(
                f"concurrency ({self.concurrency}) must be at least workers ({self.workers}): "
                "each worker needs room for one request"
            )

    def worker_concurrency(self, worker: int) -> int:
        """This worker's share of the in-flight cap (shares differ by at most one)."""
        base, extra = divmod(self.concurrency, self.workers)
        return base + (1 if worker < extra else 0)

    def with_target(self, target: str) -> LoadPlan:
        """The same run against another target."""
        return replace(self, target=target)

    def with_schedule(self, schedule: RateSchedule) -> LoadPlan:
        """The same run at another rate."""
        return replace(self, schedule=schedule)

    def describe(self) -> dict[str, object]:
        """A JSON-ready description (product ids summarised, not listed)."""
        s = self.schedule
        return {
            "target": self.target,
            "start_rps": s.start_rps,
            "end_rps": s.end_rps,
            "duration_s": s.duration_s,
            "warmup_s": s.warmup_s,
            "arrival": s.arrival,
            "scenario": str(self.mix),
            "candidates": self.candidates,
            "concurrency": self.concurrency,
            "workers": self.workers,
            "channels_per_worker": self.channels,
            "timeout_s": self.timeout_s,
            "seed": self.seed,
            "products": len(self.products),
            "run_id": self.run_id,
        }
