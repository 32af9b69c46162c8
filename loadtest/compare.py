"""Comparison mode: one scenario against several targets, medians over rounds, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loadtest.latency import Summary


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: a label and the target address to send to."""

    label: str
    target: str

    @classmethod
    def parse(cls, text: str) -> Contender:
        """ "label=host:port" or just "host:port" (then the address is the label)."""
        label, sep, target = text.partition("=")
        if not sep:
            label, target = text, text
        label, target = label.strip(), target.strip()
        if not label or not target or ":" not in target:
            raise ValueError(f"compare target must look like [label=]host:port, got {text!r}")
        return cls(label, target)


# (name, unit, how to read it from a summary, whether lower is better)
Metric = tuple[str, str, Callable[[Summary], float], bool]
METRICS: tuple[Metric, ...] = (
    ("request p50", "ms", lambda s: s.latency_ms.p50, True),
    ("request p99", "ms", lambda s: s.latency_ms.p99, True),
    ("request p99.9", "ms", lambda s: s.latency_ms.p99_9, True),
    ("per prediction p50", "us", lambda s: s.per_prediction_us.p50, True),
    ("per prediction p99", "us", lambda s: s.per_prediction_us.p99, True),
    ("server_time_us p50", "us", lambda s: s.server_time_us.p50, True),
    ("server_time_us p99", "us", lambda s: s.server_time_us.p99, True),
    ("ok rate", "/s", lambda s: s.ok_rps, False),
    ("error rate", "", lambda s: s.counts.error_rate, True),
)


@dataclass(frozen=True)
class MetricRow:
    """One metric: its median per contender over the rounds, and each median / the baseline's."""

    name: str
    unit: str
    lower_is_better: bool
    medians: dict[str, float]
    ratios: dict[str, float]


def median(values: Sequence[float]) -> float:
    """Median of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


def comparison_rows(rounds: Mapping[str, Sequence[Summary]]) -> list[MetricRow]:
    """Median of every metric per contender over its rounds; ratios against the first contender.

    A ratio is contender / baseline: 2.0 on a latency means twice as slow as the baseline.
    """
    if not rounds:
        raise ValueError("nothing to compare")
    labels = list(rounds)
    baseline = labels[0]
    rows = []
    for name, unit, read, lower_is_better in METRICS:
        medians = {label: median([read(s) for s in rounds[label]]) for label in labels}
        base = medians[baseline]
        ratios = {
            label: (value / base if math.isfinite(base) and base != 0 else float("nan"))
            for label, value in medians.items()
        }
        rows.append(MetricRow(name, unit, lower_is_better, medians, ratios))
    return rows
