"""Questions the load tester asks a target before a run: is it SERVING, and what does it serve."""

from __future__ import annotations

import logging
import subprocess

import grpc

from reco.v1 import recommender_pb2, recommender_pb2_grpc

# The health wait lives beside the stubs (training's loop driver uses it too); re-exported here.
from reco.v1.health import (
    RECOMMENDER_SERVICE,
    SERVING,
    TargetNotReadyError,
    wait_for_health,
)

__all__ = ["RECOMMENDER_SERVICE", "SERVING", "TargetNotReadyError", "model_info",
           "wait_for_health", "wait_for_serving"]  # fmt: skip

logger = logging.getLogger(__name__)


def wait_for_serving(
    target: str,
    timeout_s: float,
    service: str = RECOMMENDER_SERVICE,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """wait_for_health for SERVING."""
    wait_for_health(target, timeout_s, SERVING, service, process)


def model_info(target: str, timeout_s: float = 5.0) -> dict[str, str]:
    """Version, backend and variant of the first model the target serves ({} if it won't say)."""
    with grpc.insecure_channel(target) as channel:
        stub = recommender_pb2_grpc.RecommenderStub(channel)
        try:
            response = stub.GetModelInfo(recommender_pb2.GetModelInfoRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            logger.warning("GetModelInfo on %s failed: %s", target, exc.code())
            return {}
    if not response.models:
        return {}
    model = response.models[0]
    return {"version": model.version, "backend": model.backend, "variant": model.variant}
