"""deploy/: the Kubernetes manifests validated offline against the API's schemas
(kubernetes-validate ships them), and checked against the server they deploy: every RECO_*
variable is a real setting the server accepts, probes reach the health port, names match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from reco.settings import env_name
from server.listeners import LIVENESS_SERVICE
from server.settings import build_parser, parse_settings
from tests.unit.test_dockerfile import instructions

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = "1.33.0"  # the oldest version with everything used here (native gRPC probes: 1.27)


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "kustomization.yaml").read_text()))


def documents() -> list[dict[str, Any]]:
    docs = []
    for resource in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((DEPLOY / resource).read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def envoy_config() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "envoy" / "envoy.yaml").read_text()))


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    broken = find("Deployment", "reco-server")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_kustomization_names_files_that_exist() -> None:
    config = kustomization()
    for resource in config["resources"]:
        assert (DEPLOY / resource).is_file(), resource
    for generator in config["configMapGenerator"]:
        for file in generator["files"]:
            assert (DEPLOY / file).is_file(), file


def test_server_environment_is_settings_the_server_accepts() -> None:
    server = container(find("Deployment", "reco-server"))
    env = {item["name"]: item["value"] for item in server["env"]}
    known = {env_name(flag) for flag in _flags()}
    assert set(env) <= known, set(env) - known
    # With the image's own environment (the Dockerfile's ENV), every value parses and every
    # rule between settings holds.
    image_env = _dockerfile_env()
    settings = parse_settings([], {**image_env, **env})
    assert settings.tls and settings.require_durable_sessions
    assert settings.session_store.startswith("redis://redis:6379/")
    spec = find("Deployment", "reco-server")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > settings.grace_seconds
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert str(Path(image_env["RECO_TLS_CERT"]).parent) in mounts
    assert str(settings.runtime_dir).startswith("/run/reco/") and "/run/reco" in mounts


def test_probes_are_native_grpc_on_the_plaintext_health_port() -> None:
    server = container(find("Deployment", "reco-server"))
    health_port = int(next(e["value"] for e in server["env"] if e["name"] == "RECO_HEALTH_PORT"))
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports["health"] == health_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == health_port, probe
    assert server["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    assert "service" not in server["readinessProbe"]["grpc"]  # "": the whole server
    assert {"cpu", "memory"} <= set(server["resources"]["requests"])


def test_services_hpa_and_envoy_point_at_what_exists() -> None:
    deployment = find("Deployment", "reco-server")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    headless = find("Service", "reco-server-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= labels.items()
    grpc_port = next(p for p in headless["spec"]["ports"] if p["name"] == "grpc")
    hpa = find("HorizontalPodAutoscaler", "reco-server")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "reco-server"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"

    cluster = envoy_config()["static_resources"]["clusters"][0]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    socket = address["address"]["socket_address"]
    assert (socket["address"], socket["port_value"]) == ("reco-server-headless", grpc_port["port"])
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == ""

    envoy = find("Deployment", "reco-envoy")
    volumes = {v["name"]: v for v in envoy["spec"]["template"]["spec"]["volumes"]}
    generated = kustomization()["configMapGenerator"][0]["name"]
    assert volumes["config"]["configMap"]["name"] == generated
    ca = cluster["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
    mounts = {m["name"]: m["mountPath"] for m in container(envoy)["volumeMounts"]}
    assert Path(ca["trusted_ca"]["filename"]).parent == Path(mounts["ca"])
    listener = envoy_config()["static_resources"]["listeners"][0]
    envoy_ports = {p["name"]: p["containerPort"] for p in container(envoy)["ports"]}
    assert listener["address"]["socket_address"]["port_value"] == envoy_ports["grpc"]


def _flags() -> list[str]:
    parser = build_parser().argparser
    return [a.option_strings[0] for a in parser._actions if a.option_strings[0].startswith("--")
            and a.option_strings[0] != "--help"]  # fmt: skip


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return {k: v for k, v in env.items() if k.startswith("RECO_")}
