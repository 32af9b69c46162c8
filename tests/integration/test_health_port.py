"""--health-port: a plaintext grpc.health.v1-only listener beside a TLS public port, for
Kubernetes' native gRPC probes (which cannot speak TLS)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.listeners import LIVENESS_SERVICE
from tests.integration.certs import make_certs
from tests.integration.servers import free_port, running

SERVING = health_pb2.HealthCheckResponse.SERVING


def test_probes_reach_health_in_plaintext_and_nothing_else(
    bundle: Path, logs: Path, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "certs")
    port = free_port()
    credentials = grpc.ssl_channel_credentials(certs.ca.read_bytes())
    flags = ("--tls-cert", str(certs.server.cert), "--tls-key", str(certs.server.key),
             "--health-port", str(port))  # fmt: skip
    with running(bundle, *flags, log_dir=logs, credentials=credentials) as server:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", LIVENESS_SERVICE, "reco.v1.Recommender"):
                answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert answer.status == SERVING, service
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.RecommenderStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary("/grpc.health.v1.Health/Check")(b"\xff\xff", timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "health listening on 127.0.0.1:" in server.log()
