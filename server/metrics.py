"""Prometheus metrics of the server, served on their own HTTP port."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reco import binomial_se, difference, sample_ratio_p_value, wilson
from reco.settings import SettingError
from server.core.impressions import ImpressionLog

# Stages timed inside the server, per scoring RPC.
STAGES = {
    "Score": ("decode", "features", "predict", "rank", "encode"),
    "ScoreStream": ("decode", "features", "predict", "rank", "encode"),
    "Recommend": ("retrieval", "features", "predict", "rank", "encode"),
    "ModelInfer": ("decode", "features", "predict", "rank", "encode"),
}
# Seconds: 10 us to 1 s; the interesting range for a scoring call is 20 us to 2 ms.
LATENCY_BUCKETS = (
    1e-5, 2.5e-5, 5e-5, 7.5e-5, 1e-4, 1.5e-4, 2e-4, 3e-4, 5e-4, 7.5e-4,
    1e-3, 2e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0,
)  # fmt: skip
CANDIDATE_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 500, 1000, 5000)
# Seconds: a young collection takes microseconds; a full one over a large heap, hundreds of ms.
GC_PAUSE_BUCKETS = (1e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The server's metric families, with label children bound once (binding costs ~1 us)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "reco_requests",
            "Finished RPCs by method and status code",
            ["rpc", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "reco_request_seconds",
            "Server-side time per unary RPC, or per message of a stream",
            ["rpc"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage = Histogram(
            "reco_stage_seconds",
            "Server-side time per stage of a scoring RPC",
            ["rpc", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.candidates = Histogram(
            "reco_candidates_per_request", "Candidates scored per request", ["rpc"],
            buckets=CANDIDATE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.model = Gauge(
            "reco_model_info", "1 for each model being served", ["variant", "version", "backend"],
            multiprocess_mode="max", registry=registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "reco_in_flight_requests",
            "Calls holding an admission slot: unary calls being handled, open streams",
            ["kind"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.rejected = Counter(
            "reco_rejected_requests",
            "Calls refused with RESOURCE_EXHAUSTED before any work, by the limit reached",
            ["reason"],
            registry=registry,
        )
        self.malformed = Counter(
            "reco_malformed_requests",
            "Request messages whose bytes did not decode as the method's request type",
            ["rpc"],
            registry=registry,
        )
        self.cancelled = Counter(
            "reco_cancelled_calls",
            "Calls that ended unanswered: inside gRPC's core before Python saw them (core), "
            "after dispatch but before their handler ran (dispatch), or while handled (handler)",
            ["stage"],
            registry=registry,
        )
        self.core_queued = Gauge(
            "reco_core_queued_calls",
            "Calls gRPC's core has received and not yet handed to Python",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.loop_lag = Gauge(
            "reco_event_loop_lag_seconds",
            "How late the event loop ran the last watchdog tick",
            multiprocess_mode="max",
            registry=registry,
        )
        self.reloads = Counter(
            "reco_model_reloads", "Model reload attempts by result", ["result"], registry=registry
        )
        self.gc_pauses = Histogram(
            "reco_gc_pause_seconds", "Garbage-collection pauses by generation", ["generation"],
            buckets=GC_PAUSE_BUCKETS, registry=registry,
        )  # fmt: skip
        self._stage_children = {
            (rpc, stage): self.stage.labels(rpc, stage)
            for rpc, stages in STAGES.items()
            for stage in stages
        }
        self._latency_children = {
            rpc: self.latency.labels(rpc)
            for rpc in ("Score", "ScoreStream", "Recommend", "TrackEvent")
        }
        self.log_written = Counter(
            "reco_log_records_written", "Impression-log records in complete files, by kind",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.log_dropped = Counter(
            "reco_log_records_dropped",
            "Impression-log records dropped because the queue was full, by kind",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.log_sink_errors = Counter(
            "reco_log_sink_errors", "Failed writes of the impression log (records kept queued)",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.orphan_clicks = Counter(
            "reco_orphan_clicks",
            "Recommendation clicks naming a request id this process does not know (expired, "
            "or served by another process): accepted and logged, not counted in the A/B gauges",
            registry=registry,
        )
        self._registry = registry
        self._experiment: ExperimentCollector | None = None
        self._request_children: dict[tuple[str, str], Any] = {}
        self._candidate_children = {rpc: self.candidates.labels(rpc) for rpc in STAGES}

    def observe_stages(self, rpc: str, seconds: Mapping[str, float]) -> None:
        """Records one request's stage times."""
        for stage, value in seconds.items():
            self._stage_children[(rpc, stage)].observe(value)

    def observe_call(self, rpc: str, code: str, seconds: float | None = None) -> None:
        """Records one finished RPC, and its server-side time when it has a meaningful one."""
        counter = self._request_children.get((rpc, code))
        if counter is None:  # first call with this status: bind the child once
            counter = self._request_children[(rpc, code)] = self.requests.labels(rpc, code)
        counter.inc()
        if seconds is not None:
            self.observe_latency(rpc, seconds)

    def observe_latency(self, rpc: str, seconds: float) -> None:
        """Records the server-side time of one unary call or one message of a stream."""
        child = self._latency_children.get(rpc)
        (child or self.latency.labels(rpc)).observe(seconds)

    def observe_candidates(self, rpc: str, count: int) -> None:
        """Records how many candidates one scoring RPC scored."""
        self._candidate_children[rpc].observe(count)

    def count_written(self, kind: str, count: int) -> None:
        """Counts records written in complete files."""
        self.log_written.labels(kind).inc(count)

    def count_dropped(self, kind: str, count: int) -> None:
        """Counts records dropped at a full queue."""
        self.log_dropped.labels(kind).inc(count)

    def count_sink_error(self, kind: str) -> None:
        """Counts a failed write."""
        self.log_sink_errors.labels(kind).inc()

    def count_orphan_click(self) -> None:
        """Counts a click on an unknown request id."""
        self.orphan_clicks.inc()

    def watch_experiment(
        self, impressions: ImpressionLog, shares: Callable[[], dict[str, float]]
    ) -> None:
        """Exports the online A/B readout (computed at each scrape) from the log's counts;
        a later call replaces the log watched (one App per Metrics in a server)."""
        if self._experiment is not None:
            self._registry.unregister(self._experiment)
        self._experiment = ExperimentCollector(impressions, shares)
        self._registry.register(self._experiment)

    def set_models(self, served: list[tuple[str, str, str]]) -> None:
        """Marks the (variant, version, backend) triples being served; clears the others."""
        self.model.clear()
        for variant, version, backend in served:
            self.model.labels(variant, version, backend).set(1)


class ExperimentCollector(Collector):
    """Per variant: responses, shown slots, clicks, CTR with its Wilson 95% interval, the
    difference from variant A with its interval and p-value (slots treated as independent:
    `python -m training readout` gives the session-clustered version), and the
    sample-ratio-mismatch p-value of sessions against the configured shares. One process's
    counts: with --workers, each worker's (not aggregated)."""

    def __init__(self, impressions: ImpressionLog, shares: Callable[[], dict[str, float]]) -> None:
        self.impressions = impressions
        self.shares = shares

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, from a snapshot of the counts."""
        counts = self.impressions.snapshot()
        requests = GaugeMetricFamily("reco_ab_requests", "Logged responses", labels=["variant"])
        shown = GaugeMetricFamily("reco_ab_shown", "Shown slots", labels=["variant"])
        clicks = GaugeMetricFamily("reco_ab_clicks", "Clicks on shown slots", labels=["variant"])
        ctr = GaugeMetricFamily(
            "reco_ab_ctr",
            "Clicks per shown slot, with its 95% interval",
            labels=["variant", "bound"],
        )
        diff = GaugeMetricFamily(
            "reco_ab_ctr_difference", "CTR minus variant A's, with its 95% interval",
            labels=["variant", "bound"],
        )  # fmt: skip
        p_value = GaugeMetricFamily(
            "reco_ab_p_value", "Two-sided p-value of no CTR difference from A", labels=["variant"]
        )
        base = counts.get("A")
        for name, c in sorted(counts.items()):
            requests.add_metric([name], c.requests)
            shown.add_metric([name], c.shown)
            clicks.add_metric([name], c.clicks)
            estimate = wilson(c.clicks, c.shown)
            for bound, value in (("value", estimate.value), ("low", estimate.low),
                                 ("high", estimate.high)):  # fmt: skip
                ctr.add_metric([name, bound], value)
            if base is not None and name != "A" and base.shown and c.shown:
                d = difference(base.clicks / base.shown, binomial_se(base.clicks, base.shown),
                               c.clicks / c.shown, binomial_se(c.clicks, c.shown))  # fmt: skip
                for bound, value in (("value", d.value), ("low", d.low), ("high", d.high)):
                    diff.add_metric([name, bound], value)
                p_value.add_metric([name], d.p_value)
        yield from (requests, shown, clicks, ctr, diff, p_value)
        shares = self.shares()
        names = sorted(shares)
        srm = GaugeMetricFamily(
            "reco_ab_srm_p_value",
            "Sample-ratio-mismatch p-value: sessions per variant against the configured shares",
        )
        if len(names) > 1:
            sessions = [counts[n].sessions if n in counts else 0 for n in names]
            srm.add_metric([], sample_ratio_p_value(sessions, [shares[n] for n in names]))
        yield srm


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Starts the /metrics HTTP endpoint in a daemon thread; raises SettingError (naming
    --metrics-port) when it cannot listen.

    With PROMETHEUS_MULTIPROC_DIR set (several worker processes), it aggregates every worker's
    metric files, so one scrape sees the whole server.
    """
    registry = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    try:
        if registry is None:
            start_http_server(port, addr=host)
        else:
            start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise SettingError(
            f"--metrics-port {port}: cannot listen on {host} ({exc.strerror})"
        ) from None
