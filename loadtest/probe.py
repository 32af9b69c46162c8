"""Questions the load tester asks a target before a run: is it SERVING, and what does it serve."""

from __future__ import annotations

import logging
import subprocess
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reco.v1 import recommender_pb2, recommender_pb2_grpc

logger = logging.getLogger(__name__)

RECOMMENDER_SERVICE = "reco.v1.Recommender"
# One Watch attempt lasts at most this long, so a dead server process is noticed quickly.
_WATCH_SLICE_S = 1.0


class TargetNotReadyError(RuntimeError):
    """The target did not report SERVING in time, or its process exited."""


SERVING = health_pb2.HealthCheckResponse.SERVING


def wait_for_health(
    target: str,
    timeout_s: float,
    want: int = SERVING,
    service: str = RECOMMENDER_SERVICE,
    process: subprocess.Popen[bytes] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Blocks until the target's health service reports `service` in the `want` status (the
    one health-wait of the project: load tests, benchmarks, the demo and the tests use it).

    Waits through grpc (Health.Watch with wait_for_ready), never by sleeping; a plaintext
    channel, or TLS with `credentials`. A target without a health service counts as ready once
    it answers at all. Raises TargetNotReadyError on timeout or when `process` (the server we
    started) exits first.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer: is a server listening there?"
    wanted = health_pb2.HealthCheckResponse.ServingStatus.Name(want)
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and process.poll() is not None:
                raise TargetNotReadyError(
                    f"server process exited with code {process.returncode} before {wanted}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TargetNotReadyError(
                    f"{target} did not report {service or '(all)'} {wanted} within "
                    f"{timeout_s:g} s (last: {last})"
                )
            stream = stub.Watch(
                health_pb2.HealthCheckRequest(service=service),
                timeout=min(remaining, _WATCH_SLICE_S),
                wait_for_ready=True,
            )
            try:
                for response in stream:
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
                    if response.status == want:
                        return
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    logger.warning("%s has no health service; treating it as ready", target)
                    return
                if code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    last = f"{code.name}: {exc.details()}"
            finally:
                stream.cancel()


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
