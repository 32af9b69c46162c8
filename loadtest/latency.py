"""Latency bookkeeping: intended-time accounting, percentiles, per-prediction figures, merging."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

import grpc
import numpy as np
import numpy.typing as npt

# Status values beside grpc's own codes (0 = OK ... 16 = UNAUTHENTICATED).
DROPPED = -1  # the concurrency cap refused to send it: counted, never silently delayed
UNFINISHED = -2  # still pending when the worker stopped (should not happen: calls have deadlines)
OK = 0

_STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_STATUS_NAMES[DROPPED] = "DROPPED"
_STATUS_NAMES[UNFINISHED] = "UNFINISHED"

QUANTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
)


def status_name(code: int) -> str:
    """The name of a grpc status code value, or of the DROPPED/UNFINISHED markers."""
    return _STATUS_NAMES.get(int(code), f"STATUS_{int(code)}")


@dataclass
class Samples:
    """One row per scheduled request, as parallel arrays (times in seconds from run start).

    sent_s and done_s are NaN for a request that was never sent (DROPPED); latency is always
    counted from intended_s, the time the schedule wanted the request on the wire, so a stalled
    server or a late generator cannot hide its queueing delay (no coordinated omission).
    """

    intended_s: npt.NDArray[np.float64]
    sent_s: npt.NDArray[np.float64]
    done_s: npt.NDArray[np.float64]
    status: npt.NDArray[np.int16]
    server_us: npt.NDArray[np.float64]  # the server's own server_time_us; NaN when absent
    predictions: npt.NDArray[np.int32]  # rows scored for this request (candidates); 0 = none
    kind: npt.NDArray[np.int8]  # index into the scenario kinds

    @classmethod
    def allocate(cls, intended_s: npt.NDArray[np.float64], kind: npt.NDArray[np.int8]) -> Samples:
        """Rows for a schedule, every request still UNFINISHED until it is recorded."""
        n = len(intended_s)
        return cls(
            intended_s=np.asarray(intended_s, dtype=np.float64),
            sent_s=np.full(n, np.nan),
            done_s=np.full(n, np.nan),
            status=np.full(n, UNFINISHED, dtype=np.int16),
            server_us=np.full(n, np.nan),
            predictions=np.zeros(n, dtype=np.int32),
            kind=np.asarray(kind, dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.intended_s)

    def select(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Samples:
        """The rows picked by a boolean mask or an index array."""
        return Samples(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @property
    def latency_s(self) -> npt.NDArray[np.float64]:
        """Completion minus intended send time (NaN for requests never sent)."""
        return self.done_s - self.intended_s

    @property
    def service_s(self) -> npt.NDArray[np.float64]:
        """Completion minus actual send time: what a closed-loop client would have reported."""
        return self.done_s - self.sent_s

    @property
    def send_lag_s(self) -> npt.NDArray[np.float64]:
        """How late the generator put each request on the wire (NaN when never sent)."""
        return self.sent_s - self.intended_s


def merge(parts: Iterable[Samples]) -> Samples:
    """Joins the samples of several worker processes into one set, ordered by intended time."""
    parts = list(parts)
    if not parts:
        return Samples.allocate(np.zeros(0), np.zeros(0, dtype=np.int8))
    joined = Samples(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Samples)}
    )
    order = np.argsort(joined.intended_s, kind="stable")
    return joined.select(order)


def measured_window(samples: Samples, warmup_s: float) -> Samples:
    """The samples scheduled after the warm-up (the warm-up is sent but never counted)."""
    return samples.select(samples.intended_s >= warmup_s)


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of one quantity, in the unit its name says."""

    count: int
    p50: float
    p90: float
    p99: float
    p99_9: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float | int]:
        """Keys as printed: count, p50, p90, p99, p99.9, max, mean."""
        return {
            "count": self.count,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "p99.9": self.p99_9,
            "max": self.max,
            "mean": self.mean,
        }


def percentiles(values: npt.ArrayLike, scale: float = 1.0) -> Percentiles:
    """Nearest-rank percentiles (an observed value, never an interpolation) of the finite values.

    scale multiplies every figure (e.g. 1e3 for seconds -> milliseconds). With no values every
    figure is NaN, which no SLO bound accepts.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)] * scale
    if data.size == 0:
        nan = float("nan")
        return Percentiles(0, nan, nan, nan, nan, nan, nan)
    qs = np.quantile(data, [q for _, q in QUANTILES], method="inverted_cdf")
    return Percentiles(
        count=int(data.size),
        p50=float(qs[0]),
        p90=float(qs[1]),
        p99=float(qs[2]),
        p99_9=float(qs[3]),
        max=float(data.max()),
        mean=float(data.mean()),
    )


def per_prediction_s(samples: Samples) -> npt.NDArray[np.float64]:
    """Request latency divided by rows scored, for the OK requests that scored something."""
    scored = (samples.status == OK) & (samples.predictions > 0)
    return samples.latency_s[scored] / samples.predictions[scored]


def errors_by_status(samples: Samples) -> dict[str, int]:
    """How many requests ended in each non-OK status (DROPPED included), largest first."""
    codes, counts = np.unique(samples.status[samples.status != OK], return_counts=True)
    pairs = sorted(zip(codes.tolist(), counts.tolist(), strict=True), key=lambda p: -p[1])
    return {status_name(code): int(count) for code, count in pairs}


def error_latency_ms(samples: Samples) -> dict[str, Percentiles]:
    """How fast each non-OK status came back, from the intended send time (never-sent DROPPED
    requests have none): a server that sheds load answers RESOURCE_EXHAUSTED in milliseconds."""
    answered = (samples.status != OK) & np.isfinite(samples.done_s)
    return {
        status_name(code): percentiles(samples.latency_s[answered & (samples.status == code)], 1e3)
        for code in np.unique(samples.status[answered]).tolist()
    }


@dataclass(frozen=True)
class Counts:
    """What happened to the requests of a window."""

    scheduled: int
    sent: int
    ok: int
    errors: int  # answered with a non-OK status
    dropped: int  # refused by the concurrency cap
    unfinished: int

    @property
    def error_rate(self) -> float:
        """Share of scheduled requests that did not get an OK answer (drops count as failures)."""
        return (self.scheduled - self.ok) / self.scheduled if self.scheduled else float("nan")


def counts(samples: Samples) -> Counts:
    """Counts the outcomes of a set of samples."""
    status = samples.status
    dropped = int(np.count_nonzero(status == DROPPED))
    unfinished = int(np.count_nonzero(status == UNFINISHED))
    ok = int(np.count_nonzero(status == OK))
    return Counts(
        scheduled=len(samples),
        sent=len(samples) - dropped,
        ok=ok,
        errors=len(samples) - ok - dropped - unfinished,
        dropped=dropped,
        unfinished=unfinished,
    )


@dataclass(frozen=True)
class Summary:
    """The figures of one window of a run: counts, rates and latency distributions."""

    counts: Counts
    errors_by_status: dict[str, int]
    window_s: float
    target_rps: float
    sent_rps: float
    ok_rps: float
    predictions_per_s: float
    latency_ms: Percentiles  # all OK requests, from intended send time to answer
    service_ms: Percentiles  # the same from the actual send time (excludes generator lag)
    per_prediction_us: Percentiles  # OK requests that scored rows: latency / rows
    server_time_us: Percentiles  # the server's own server_time_us of OK answers
    send_lag_ms: Percentiles  # how late the generator sent (a client-health figure)
    by_kind: dict[str, KindSummary] = field(default_factory=dict)
    error_latency_ms: dict[str, Percentiles] = field(default_factory=dict)  # by status

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary."""
        c = self.counts
        return {
            "requests": {
                "scheduled": c.scheduled,
                "sent": c.sent,
                "ok": c.ok,
                "errors": c.errors,
                "dropped": c.dropped,
                "unfinished": c.unfinished,
                "error_rate": c.error_rate,
            },
            "errors_by_status": self.errors_by_status,
            "rate": {
                "window_s": self.window_s,
                "target_rps": self.target_rps,
                "sent_rps": self.sent_rps,
                "ok_rps": self.ok_rps,
                "predictions_per_s": self.predictions_per_s,
            },
            "latency_ms": self.latency_ms.as_dict(),
            "service_ms": self.service_ms.as_dict(),
            "per_prediction_us": self.per_prediction_us.as_dict(),
            "server_time_us": self.server_time_us.as_dict(),
            "send_lag_ms": self.send_lag_ms.as_dict(),
            "by_kind": {name: k.as_dict() for name, k in self.by_kind.items()},
            "error_latency_ms": {name: p.as_dict() for name, p in self.error_latency_ms.items()},
        }


@dataclass(frozen=True)
class KindSummary:
    """The figures of one request kind (score, recommend-session, ...) within a window."""

    counts: Counts
    errors_by_status: dict[str, int]
    latency_ms: Percentiles
    per_prediction_us: Percentiles
    server_time_us: Percentiles

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary."""
        return {
            "scheduled": self.counts.scheduled,
            "ok": self.counts.ok,
            "error_rate": self.counts.error_rate,
            "errors_by_status": self.errors_by_status,
            "latency_ms": self.latency_ms.as_dict(),
            "per_prediction_us": self.per_prediction_us.as_dict(),
            "server_time_us": self.server_time_us.as_dict(),
        }


def _ok(samples: Samples) -> Samples:
    return samples.select(samples.status == OK)


def summarize_kind(samples: Samples) -> KindSummary:
    """Summarises the samples of one request kind."""
    ok = _ok(samples)
    return KindSummary(
        counts=counts(samples),
        errors_by_status=errors_by_status(samples),
        latency_ms=percentiles(ok.latency_s, 1e3),
        per_prediction_us=percentiles(per_prediction_s(samples), 1e6),
        server_time_us=percentiles(ok.server_us),
    )


def summarize(samples: Samples, window_s: float, kind_names: Sequence[str]) -> Summary:
    """Summarises the measured window of a run (pass the samples after the warm-up only).

    window_s is the measured duration; rates are counts over it. The target rate is what the
    schedule asked for in the window, so achieved/target compares like with like.
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    c = counts(samples)
    ok = _ok(samples)
    by_kind = {
        name: summarize_kind(samples.select(samples.kind == index))
        for index, name in enumerate(kind_names)
        if np.any(samples.kind == index)
    }
    return Summary(
        counts=c,
        errors_by_status=errors_by_status(samples),
        window_s=window_s,
        target_rps=c.scheduled / window_s,
        sent_rps=c.sent / window_s,
        ok_rps=c.ok / window_s,
        predictions_per_s=float(ok.predictions.sum()) / window_s,
        latency_ms=percentiles(ok.latency_s, 1e3),
        service_ms=percentiles(ok.service_s, 1e3),
        per_prediction_us=percentiles(per_prediction_s(samples), 1e6),
        server_time_us=percentiles(ok.server_us),
        send_lag_ms=percentiles(samples.send_lag_s, 1e3),
        by_kind=by_kind,
        error_latency_ms=error_latency_ms(samples),
    )


@dataclass(frozen=True)
class TimeSeries:
    """Per-bucket figures over the run, by intended send time (for the latency-over-time plot)."""

    bucket_start_s: list[float]
    requests: list[int]
    errors: list[int]  # non-OK, drops included
    p50_ms: list[float]
    p99_ms: list[float]
    max_ms: list[float]

    def as_dict(self) -> dict[str, list[float] | list[int]]:
        """A JSON-ready dictionary of equal-length lists."""
        return {
            "bucket_start_s": self.bucket_start_s,
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


def time_series(samples: Samples, bucket_s: float = 1.0) -> TimeSeries:
    """Buckets the samples by intended send time; latency figures cover OK answers only."""
    if bucket_s <= 0:
        raise ValueError(f"bucket_s must be > 0, got {bucket_s}")
    if len(samples) == 0:
        return TimeSeries([], [], [], [], [], [])
    bucket = np.floor(samples.intended_s / bucket_s).astype(np.int64)
    first, last = int(bucket.min()), int(bucket.max())
    series = TimeSeries([], [], [], [], [], [])
    latency = samples.latency_s
    for b in range(first, last + 1):
        in_bucket = bucket == b
        ok_latency = latency[in_bucket & (samples.status == OK)]
        stats = percentiles(ok_latency, 1e3)
        series.bucket_start_s.append(b * bucket_s)
        series.requests.append(int(np.count_nonzero(in_bucket)))
        series.errors.append(int(np.count_nonzero(in_bucket & (samples.status != OK))))
        series.p50_ms.append(stats.p50)
        series.p99_ms.append(stats.p99)
        series.max_ms.append(stats.max)
    return series
