"""Waiting on a server's gRPC health service: the one health wait of the project."""

from __future__ import annotations

import logging
import subprocess
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
