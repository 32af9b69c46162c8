"""Service-level objectives and the PASS/FAIL verdict of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.latency import Summary

DEFAULT_P99_PER_PREDICTION_MS = 1.0
DEFAULT_P99_REQUEST_MS = 25.0
DEFAULT_MAX_ERROR_RATE = 0.001


@dataclass(frozen=True)
class SloConfig:
    """The bounds a run must stay under. None disables a bound."""

    p99_per_prediction_ms: float | None = DEFAULT_P99_PER_PREDICTION_MS
    p99_request_ms: float | None = DEFAULT_P99_REQUEST_MS
    max_error_rate: float | None = DEFAULT_MAX_ERROR_RATE

    def __post_init__(self) -> None:
        for name in ("p99_per_prediction_ms", "p99_request_ms", "max_error_rate"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"SLO {name} must be a number >= 0, got {value!r}")

    def describe(self) -> str:
        """The bounds in words, e.g. "p99 per prediction < 1 ms, error rate <= 0.001"."""
        bounds = []
        if self.p99_per_prediction_ms is not None:
            bounds.append(f"p99 per prediction < {self.p99_per_prediction_ms:g} ms")
        if self.p99_request_ms is not None:
            bounds.append(f"p99 request latency < {self.p99_request_ms:g} ms")
        if self.max_error_rate is not None:
            bounds.append(f"error rate <= {self.max_error_rate:g}")
        return ", ".join(bounds) or "no bounds"


@dataclass(frozen=True)
class Check:
    """One SLO bound against what the run observed."""

    name: str
    observed: float
    bound: float
    unit: str
    # Latency bounds are strict ("under 1 ms"); a rate bound of 0 must mean "none allowed".
    inclusive: bool = False

    @property
    def passed(self) -> bool:
        """Observed under the bound (or at it, when inclusive); NaN never passes."""
        if not math.isfinite(self.observed):
            return False
        return self.observed <= self.bound if self.inclusive else self.observed < self.bound

    def describe(self) -> str:
        """e.g. "p99 per prediction 0.41 ms < 1 ms: ok"."""
        mark = "ok" if self.passed else "BREACHED"
        sign = "<=" if self.inclusive else "<"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {self.observed:.4g}{unit} {sign} {self.bound:g}{unit}: {mark}"


@dataclass(frozen=True)
class Verdict:
    """All checks of a run; it passes when every check does."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """True when every bound held."""
        return all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 for PASS, 1 for FAIL."""
        return 0 if self.passed else 1

    def line(self) -> str:
        """The one-line verdict, e.g. "SLO PASS: p99 per prediction 0.41 ms < 1 ms: ok; ..."."""
        word = "PASS" if self.passed else "FAIL"
        return f"SLO {word}: " + "; ".join(c.describe() for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary."""
        return {
            "passed": self.passed,
            "checks": [
                {
                    "name": c.name,
                    "observed": c.observed,
                    "bound": c.bound,
                    "unit": c.unit,
                    "passed": c.passed,
                }
                for c in self.checks
            ],
        }


def evaluate(summary: Summary, slo: SloConfig) -> Verdict:
    """Checks a run's measured window against the SLOs."""
    checks: list[Check] = []
    if slo.p99_per_prediction_ms is not None:
        observed = summary.per_prediction_us.p99 / 1e3
        checks.append(Check("p99 per prediction", observed, slo.p99_per_prediction_ms, "ms"))
    if slo.p99_request_ms is not None:
        checks.append(
            Check("p99 request latency", summary.latency_ms.p99, slo.p99_request_ms, "ms")
        )
    if slo.max_error_rate is not None:
        checks.append(
            Check("error rate", summary.counts.error_rate, slo.max_error_rate, "", inclusive=True)
        )
    return Verdict(tuple(checks))
