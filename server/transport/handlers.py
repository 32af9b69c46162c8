"""RPC logic on protobuf messages, shared by the thread-pool and asyncio servers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from reco.v1 import recommender_pb2 as pb
from server.core.registry import ModelRegistry
from server.core.scoring import Scorer
from server.metrics import Metrics
from server.transport.convert import score_query_from_proto, score_response
from server.transport.status import status_for

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """A finished call: a response, or the status to abort with."""

    response: Any
    code: grpc.StatusCode
    message: str


def deadline_of(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline as a time.monotonic() instant, or None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class Handlers:
    """Translates messages, calls the core, and records metrics; knows nothing of threads."""

    def __init__(self, registry: ModelRegistry, scorer: Scorer, metrics: Metrics) -> None:
        self.registry = registry
        self.scorer = scorer
        self.metrics = metrics
        self.last_reload_error = ""
        self.last_reload_time: float | None = None

    def run(
        self,
        rpc: str,
        handler: Callable[[Any, float | None], Any],
        request: Any,
        deadline: float | None,
    ) -> Outcome:
        """Runs one handler; every exception becomes a status, never a crash."""
        start = time.perf_counter()
        try:
            response = handler(request, deadline)
            outcome = Outcome(response, grpc.StatusCode.OK, "")
        except Exception as error:  # the error table decides what each one means
            code, message = status_for(error, rpc)
            outcome = Outcome(None, code, message)
        self.metrics.observe_request(rpc, outcome.code.name, time.perf_counter() - start)
        return outcome

    # -- Score ------------------------------------------------------------------------------

    def score(
        self, request: pb.ScoreRequest, deadline: float | None, rpc: str = "Score"
    ) -> pb.ScoreResponse:
        """Score and ScoreStream: decode, score in one backend call, encode."""
        t0 = time.perf_counter()
        query = score_query_from_proto(request)
        t1 = time.perf_counter()
        result = self.scorer.score(query, deadline)
        t2 = time.perf_counter()
        response = score_response(result, query.candidates.product_ids)
        t3 = time.perf_counter()
        response.server_time_us = int((t3 - t0) * 1e6)
        stages = result.stage_seconds
        stages["decode"] = t1 - t0
        stages["encode"] = t3 - t2
        self.metrics.observe_stages(rpc, stages)
        self.metrics.candidates.labels(rpc).observe(len(result.scores))
        return response

    def score_stream(self, request: pb.ScoreRequest, deadline: float | None) -> pb.ScoreResponse:
        """One message of ScoreStream."""
        return self.score(request, deadline, rpc="ScoreStream")

    # -- GetModelInfo -----------------------------------------------------------------------

    def model_info(
        self, request: pb.GetModelInfoRequest, deadline: float | None
    ) -> pb.GetModelInfoResponse:
        """Describes every variant being served and the last failed reload."""
        del request, deadline
        variants = self.registry.variants()
        total = sum(v.share for v in variants) or 1.0
        response = pb.GetModelInfoResponse(last_reload_error=self.last_reload_error)
        if self.last_reload_time is not None:
            response.last_reload_time.FromNanoseconds(int(self.last_reload_time * 1e9))
        for variant in variants:
            model = variant.model
            response.models.add(
                version=model.version,
                backend=model.backend.name,
                feature_names=list(model.manifest["feature_names"]),
                default_threshold=model.threshold,
                file_sha256=model.manifest["files"],
                bundle_path=str(model.bundle_dir),
                created_at=str(model.manifest["created_at"]),
                variant=variant.name if len(variants) > 1 else "",
                traffic_share=variant.share / total,
                rejected_backends=list(model.rejected_backends),
            )
        return response
