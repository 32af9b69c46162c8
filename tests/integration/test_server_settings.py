"""`python -m server` with each bad setting: exit 2, one line on stderr naming the setting, no
traceback, before any model is loaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.servers import ROOT, free_port


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something else already listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


BAD_VALUES = [
    (["--port", "70000"], {}, ["--port", "70000"]),
    (["--port", "-1"], {}, ["--port"]),
    ([], {"RECO_PORT": "abc"}, ["RECO_PORT", "--port", "'abc'"]),
    (["--metrics-port", "65536"], {}, ["--metrics-port"]),
    (["--session-ttl-seconds", "-5"], {}, ["--session-ttl-seconds"]),
    (["--session-ttl-seconds", "nan"], {}, ["--session-ttl-seconds"]),
    (["--grace-seconds", "-1"], {}, ["--grace-seconds"]),
    (["--drain-seconds", "-1"], {}, ["--drain-seconds"]),
    (["--drain-seconds", "9", "--grace-seconds", "2"], {}, ["--drain-seconds", "--grace-seconds"]),
    (["--watch-seconds", "-1"], {}, ["--watch-seconds"]),
    (["--watch-seconds", "0.001"], {}, ["--watch-seconds"]),
    (["--max-message-bytes", "10"], {}, ["--max-message-bytes", "65536"]),
    (["--ab-share", "1.5"], {}, ["--ab-share"]),
    ([], {"RECO_AB_SHARE": "0"}, ["RECO_AB_SHARE"]),
    (["--catalog-limit", "200"], {}, ["--retrieval-size", "--catalog-limit"]),
    (["--catalog-limit", "10"], {}, ["--catalog-limit", "100"]),
    (["--retrieval-size", "99"], {}, ["--retrieval-size", "100"]),
    (["--retrieval-size", "100001"], {}, ["--retrieval-size", "100000"]),
    (["--workers", "0"], {}, ["--workers"]),
    (["--max-in-flight", "0"], {}, ["--max-in-flight"]),
    (["--log-level", "LOUD"], {}, ["--log-level"]),
    (["--backend", "gpu"], {}, ["--backend"]),
    (["--tls-cert", "x.pem"], {}, ["--tls-cert", "--tls-key"]),
    (["--admin-tls-client-ca", "ca.pem"], {}, ["--admin-tls-client-ca"]),
    (["--session-store", "redis-ish://u:hunter2@h"], {}, ["--session-store"]),
    (["--nonsense"], {}, ["--nonsense"]),
]


@pytest.mark.parametrize(("args", "env", "names"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_setting(
    args: list[str], env: dict[str, str], names: list[str]
) -> None:
    line = assert_refused(start(*args, env=env), *names)
    assert "hunter2" not in line  # a store URL's password is never echoed


def test_a_taken_grpc_port(bundle: Path, listening: int) -> None:
    line = assert_refused(start("--bundle", str(bundle), "--port", str(listening)), "--port")
    assert "already in use" in line


def test_a_taken_metrics_port(bundle: Path, listening: int) -> None:
    args = ["--bundle", str(bundle), "--port", str(free_port()), "--metrics-port", str(listening)]
    line = assert_refused(start(*args), "--metrics-port")
    assert "already in use" in line


def test_an_unbindable_host(bundle: Path) -> None:
    # A documentation address (TEST-NET-3) that no interface here has: bind fails, nothing is sent.
    line = assert_refused(start("--bundle", str(bundle), "--host", "203.0.113.7"), "--host")
    assert "cannot listen there" in line


def test_a_missing_bundle_and_one_outside_the_root(bundle: Path, tmp_path: Path) -> None:
    assert_refused(start("--bundle", str(tmp_path / "nope")), "--bundle", "does not exist")
    other = tmp_path / "root"
    other.mkdir()
    assert_refused(start("--bundle", str(bundle), "--bundle-root", str(other)),
                   "--bundle", "outside --bundle-root")  # fmt: skip


def test_unusable_key_token_tls_and_admin_files(bundle: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("too short\n")
    assert_refused(start("--bundle", str(bundle), "--bundle-key-file", str(short)),
                   "--bundle-key-file", "at least 32")  # fmt: skip
    assert_refused(start("--bundle", str(bundle), "--bundle-key-file", str(tmp_path / "none")),
                   "--bundle-key-file", "cannot read")  # fmt: skip
    assert_refused(start("--bundle", str(bundle), "--admin-token-file", str(short)),
                   "--admin-token-file", "at least 16")  # fmt: skip
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    assert_refused(start("--bundle", str(bundle), "--tls-cert", str(garbage), "--tls-key",
                         str(garbage)), "--tls-cert", "--tls-key")  # fmt: skip
    assert_refused(start("--bundle", str(bundle), "--admin-address", "unix:relative.sock"),
                   "--admin-address")  # fmt: skip
    assert_refused(start("--bundle", str(bundle), "--admin-address", "0.0.0.0:7000"),
                   "--admin-address", "other machines")  # fmt: skip


def test_a_runtime_dir_others_can_write_is_refused(bundle: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert_refused(start("--bundle", str(bundle), "--runtime-dir", str(shared)),
                   "--runtime-dir", "not private")  # fmt: skip
