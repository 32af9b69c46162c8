"""Prometheus metrics of the server, served on their own HTTP port."""

from __future__ import annotations

import os
from collections.abc import Mapping
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

from reco.settings import SettingError

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

    def set_models(self, served: list[tuple[str, str, str]]) -> None:
        """Marks the (variant, version, backend) triples being served; clears the others."""
        self.model.clear()
        for variant, version, backend in served:
            self.model.labels(variant, version, backend).set(1)


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
