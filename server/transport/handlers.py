"""RPC logic on protobuf messages: translate, call the core, record stage metrics; errors are
raised as core exceptions for the call guard to turn into statuses."""

from __future__ import annotations

import logging
import time

import grpc

from reco.v1 import recommender_pb2 as pb
from server.core.errors import (
    ECHO_CHARS,
    InvalidArgument,
    LimitExceeded,
    MalformedRequest,
    SessionFull,
)
from server.core.recommend import Recommender
from server.core.registry import ModelRegistry
from server.core.reload import Reloader
from server.core.scoring import Scorer
from server.core.sessions import SessionStore
from server.core.validation import require_session_id, validate_event
from server.metrics import Metrics
from server.transport.convert import (
    event_from_proto,
    recommend_query_from_proto,
    recommend_response,
    score_query_from_proto,
    score_response,
    session_summary,
)
from server.transport.guard import Malformed, decoded
from server.transport.status import StreamStopped

log = logging.getLogger(__name__)

# Errors that are one event's own fault: StreamEvents rejects that event and goes on.
EVENT_FAULTS = (InvalidArgument, LimitExceeded, MalformedRequest, SessionFull)


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline as a time.monotonic() instant, or None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class Handlers:
    """Translates messages, calls the core, and records stage metrics; knows nothing of
    threads, admission or statuses."""

    def __init__(
        self,
        registry: ModelRegistry,
        scorer: Scorer,
        recommender: Recommender,
        store: SessionStore,
        reloader: Reloader,
        metrics: Metrics,
    ) -> None:
        self.registry = registry
        self.scorer = scorer
        self.recommender = recommender
        self.store = store
        self.reloader = reloader
        self.metrics = metrics

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
        self.metrics.observe_candidates(rpc, len(result.scores))
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
        response = pb.GetModelInfoResponse(last_reload_error=self.reloader.last_error)
        if self.reloader.last_time is not None:
            response.last_reload_time.FromNanoseconds(int(self.reloader.last_time * 1e9))
        for variant in variants:
            model = variant.model
            response.models.add(
                version=model.version,
                backend=model.backend.name,
                feature_names=list(model.feature_names),
                default_threshold=model.threshold,
                file_sha256=model.files,
                bundle_path=model.bundle_name,
                created_at=model.created_at,
                variant=variant.name if len(variants) > 1 else "",
                traffic_share=variant.share / total,
                rejected_backends=list(model.rejected_backends),
            )
        return response

    # -- Sessions ---------------------------------------------------------------------------

    def track_event(
        self, request: pb.TrackEventRequest, deadline: float | None
    ) -> pb.TrackEventResponse:
        """Stores one event (once per event id) and answers with the session after it."""
        start = time.perf_counter()
        now = _now_ms()
        event = event_from_proto(request.event, now)
        validate_event(event, limits=self.store.limits, now_ms=now)
        tracked = self.store.track(event, deadline)
        response = pb.TrackEventResponse(
            duplicate=tracked.duplicate, session=session_summary(tracked.state)
        )
        response.server_time_us = int((time.perf_counter() - start) * 1e6)
        return response

    def track_in_stream(self, message: pb.TrackEventRequest | Malformed, index: int,
                        summary: pb.StreamEventsResponse) -> None:  # fmt: skip
        """One event of StreamEvents. An event that is this event's own fault (malformed bytes
        or fields, over a limit) is rejected in the summary and the stream goes on; anything
        else stops the stream, saying which events were stored, so nothing accepted is lost
        silently."""
        path = f"events[{index}]"
        now = _now_ms()
        try:
            event = event_from_proto(decoded(message).event, now, prefix=path)
            validate_event(event, path, self.store.limits, now)
            tracked = self.store.track(event)
        except EVENT_FAULTS as exc:
            event_id = message.event.event_id if isinstance(message, pb.TrackEventRequest) else ""
            summary.rejected += 1
            summary.errors.add(index=index, event_id=event_id[:ECHO_CHARS], message=str(exc))
            return
        except Exception as exc:
            raise StreamStopped(
                exc,
                after=f"; events [0, {index}) were handled (accepted {summary.accepted}, "
                f"duplicates {summary.duplicates}, rejected {summary.rejected}), "
                f"resend from {path}",
            ) from exc
        if tracked.duplicate:
            summary.duplicates += 1
        else:
            summary.accepted += 1

    def recommend(
        self, request: pb.RecommendRequest, deadline: float | None
    ) -> pb.RecommendResponse:
        """Top-k for a tracked session (cold start for an unknown one)."""
        t0 = time.perf_counter()
        result = self.recommender.recommend(recommend_query_from_proto(request), deadline)
        t1 = time.perf_counter()
        response = recommend_response(result)
        t2 = time.perf_counter()
        response.server_time_us = int((t2 - t0) * 1e6)
        stages = result.stage_seconds
        stages["encode"] = t2 - t1
        self.metrics.observe_stages("Recommend", stages)
        self.metrics.observe_candidates("Recommend", result.candidates_scored)
        return response

    def forget_session(
        self, request: pb.ForgetSessionRequest, deadline: float | None
    ) -> pb.ForgetSessionResponse:
        """Deletes a session's state everywhere the store keeps it."""
        require_session_id(request.session_id)
        return pb.ForgetSessionResponse(existed=self.store.forget(request.session_id, deadline))

    # -- Admin ------------------------------------------------------------------------------

    def reload_model(
        self, request: pb.ReloadModelRequest, deadline: float | None
    ) -> pb.ReloadModelResponse:
        """Loads, checks, warms and swaps in a bundle for a variant (blocking until done)."""
        del deadline
        result = self.reloader.reload_request(
            request.variant, request.bundle_path, request.reload_configured
        )
        return pb.ReloadModelResponse(
            swapped=result.swapped, model_version=result.version, error=result.error
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
