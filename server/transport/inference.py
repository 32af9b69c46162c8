"""The Open Inference Protocol (KServe V2 gRPC, package `inference`) beside reco.v1: thin
over the core's Scorer, like the Recommender servicer (the call guard does decoding,
admission, statuses and call metrics)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import grpc

from reco.inference_v2 import grpc_predict_v2_pb2 as v2
from reco.inference_v2 import grpc_predict_v2_pb2_grpc as v2_grpc
from reco.inference_v2 import metadata_parameters_pb2 as v2_extra
from server.core.errors import NotFound, echo
from server.core.registry import ModelRegistry
from server.core.scoring import Scorer
from server.metrics import Metrics
from server.transport.servicers import run_handler
from server.transport.tensors import (
    CONTEXT_PARAMETERS,
    FEATURES,
    PROBABILITY,
    PRODUCT_ID,
    SKIP_UNKNOWN,
    infer_query,
    infer_response,
)

SERVICE = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "reco-scoring-server"
PLATFORM = "reco_lightgbm"  # free-form in the protocol: LightGBM trees, compiled or not


def _server_version() -> str:
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:
        return "unknown"


class InferenceHandlers:
    """V2 RPC logic on protobuf messages: translate, call the core, translate back."""

    def __init__(
        self,
        registry: ModelRegistry,
        scorer: Scorer,
        metrics: Metrics,
        model_name: str,
        ready: Callable[[], bool],
    ) -> None:
        self.registry = registry
        self.scorer = scorer
        self.metrics = metrics
        self.model_name = model_name
        self.ready = ready  # the server's health: a model loaded and warmed, not shutting down

    def _versions(self) -> list[str]:
        return [variant.model.version for variant in self.registry.variants()]

    def _check_model(self, name: str, version: str, field: str = "name") -> None:
        """NOT_FOUND for a model or version this server does not serve (V2's convention)."""
        if name != self.model_name:
            raise NotFound(
                f"{field} {echo(name)}: this server serves the model {self.model_name!r}"
            )
        versions = self._versions()
        if version and version not in versions:
            shown = ", ".join(versions) or "none loaded yet"
            raise NotFound(f"model {self.model_name!r} has no version {echo(version)} ({shown})")

    def server_live(
        self, request: v2.ServerLiveRequest, deadline: float | None
    ) -> v2.ServerLiveResponse:
        """Live whenever the process answers."""
        del request, deadline
        return v2.ServerLiveResponse(live=True)

    def server_ready(
        self, request: v2.ServerReadyRequest, deadline: float | None
    ) -> v2.ServerReadyResponse:
        """Ready exactly when grpc.health.v1 says SERVING."""
        del request, deadline
        return v2.ServerReadyResponse(ready=self.ready())

    def model_ready(
        self, request: v2.ModelReadyRequest, deadline: float | None
    ) -> v2.ModelReadyResponse:
        """Ready when the server is and the model (that version, if given) is loaded."""
        del deadline
        if request.name != self.model_name:
            self._check_model(request.name, request.version)
        versions = self._versions()
        loaded = bool(versions) and (not request.version or request.version in versions)
        return v2.ModelReadyResponse(ready=loaded and self.ready())

    def server_metadata(
        self, request: v2.ServerMetadataRequest, deadline: float | None
    ) -> v2.ServerMetadataResponse:
        """Name and version; no protocol extensions."""
        del request, deadline
        return v2.ServerMetadataResponse(name=SERVER_NAME, version=_server_version())

    def model_metadata(
        self, request: v2.ModelMetadataRequest, deadline: float | None
    ) -> v2.ModelMetadataResponse:
        """Inputs, outputs and, as MLServer's parameters field, the feature order."""
        del deadline
        self._check_model(request.name, request.version)
        variants = self.registry.variants()
        names = list(variants[0].model.feature_names) if variants else []
        response = v2.ModelMetadataResponse(
            name=self.model_name, versions=self._versions(), platform=PLATFORM
        )
        response.inputs.add(name=FEATURES, datatype="FP32", shape=[-1, len(names) or -1])
        response.inputs.add(name=PRODUCT_ID, datatype="BYTES", shape=[-1])
        response.outputs.add(name=PROBABILITY, datatype="FP32", shape=[-1])
        extra = v2_extra.ModelMetadataParameters()
        extra.parameters["feature_names"].string_param = ",".join(names)
        extra.parameters["context_parameters"].string_param = ",".join(
            [*CONTEXT_PARAMETERS, SKIP_UNKNOWN]
        )
        # Appended bytes: an unknown field 6 to the official message (see the .proto).
        response.MergeFromString(extra.SerializeToString())
        return response

    def model_infer(
        self, request: v2.ModelInferRequest, deadline: float | None
    ) -> v2.ModelInferResponse:
        """Scores every row in one backend call, answering in request order."""
        t0 = time.perf_counter()
        self._check_model(request.model_name, request.model_version, "model_name")
        # The core checks everything else (server/core/validation.py), as for Score: the
        # features' width against the model serving this session, ids, context values.
        query = infer_query(request)
        t1 = time.perf_counter()
        result = self.scorer.score(query.score, deadline)
        if request.model_version and result.model_version != request.model_version:
            raise NotFound(
                f"model_version {echo(request.model_version)} is not the one serving this "
                f"session ({result.model_version}); leave model_version empty"
            )
        t2 = time.perf_counter()
        parameters = {"backend": result.backend}
        if result.variant:
            parameters["variant"] = result.variant
        if result.unknown_product_ids:
            parameters["unknown_product_ids"] = ",".join(result.unknown_product_ids)
        response = infer_response(
            request,
            result.scores,
            self.model_name,
            result.model_version,
            parameters,
            query.raw_output,
        )
        t3 = time.perf_counter()
        stages = dict(result.stage_seconds)
        stages["decode"] = t1 - t0
        stages["encode"] = t3 - t2
        self.metrics.observe_stages("ModelInfer", stages)
        self.metrics.observe_candidates("ModelInfer", query.rows)
        return response


class InferenceServicer(v2_grpc.GRPCInferenceServiceServicer):
    """Thin: each method hands its request to InferenceHandlers (a ModelInfer that completes
    its context from a remote session store runs on `blocking` threads)."""

    def __init__(self, handlers: InferenceHandlers, blocking: ThreadPoolExecutor | None) -> None:
        self.handlers = handlers
        self.blocking = blocking

    async def ServerLive(
        self, request: v2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerLiveResponse:
        return await run_handler(self.blocking, self.handlers.server_live, request, context)

    async def ServerReady(
        self, request: v2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerReadyResponse:
        return await run_handler(self.blocking, self.handlers.server_ready, request, context)

    async def ModelReady(
        self, request: v2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelReadyResponse:
        return await run_handler(self.blocking, self.handlers.model_ready, request, context)

    async def ServerMetadata(
        self, request: v2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerMetadataResponse:
        return await run_handler(self.blocking, self.handlers.server_metadata, request, context)

    async def ModelMetadata(
        self, request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelMetadataResponse:
        return await run_handler(self.blocking, self.handlers.model_metadata, request, context)

    async def ModelInfer(
        self, request: v2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelInferResponse:
        # Only a context of nothing but a session id reads the store (as Score).
        params = request.parameters
        uses_store = "session_id" in params and "current_product_id" not in params
        handler = self.handlers.model_infer
        return await run_handler(self.blocking, handler, request, context, uses_store)
