"""Fuzzing a real server: random bytes and extreme messages to every method of Recommender,
Admin, Health and reflection never get INTERNAL or UNKNOWN, and the server stays up and small.

About 500 calls in all (40 per method), bounded in time; the inputs live in fuzz_cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.fuzz_cases import FORBIDDEN, METHODS, Method, call, payloads
from tests.integration.servers import ServerProcess, running

EXAMPLES_PER_METHOD = 40
RSS_GROWTH_LIMIT_MB = 300


ADMIN_PREFIX = "/reco.v1.Admin/"


@pytest.fixture(scope="module")
def admin_socket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths are limited to 107 bytes: pytest's temporary paths can be longer.
    return Path(tmp_path_factory.mktemp("fz", numbered=True)) / "a.sock"


@pytest.fixture(scope="module")
def server(bundle: Path, logs: Path, admin_socket: Path) -> Iterator[ServerProcess]:
    """A default server whose admin listener (a Unix socket) is fuzzed too."""
    with running(bundle, "--admin-address", f"unix:{admin_socket}", log_dir=logs) as process:
        yield process


@pytest.fixture(scope="module")
def rss_before(server: ServerProcess) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


@pytest.fixture(scope="module")
def channels(
    server: ServerProcess, admin_socket: Path, rss_before: int
) -> Iterator[tuple[grpc.Channel, grpc.Channel]]:
    """(public, admin) channels; Admin methods go to the admin listener, the rest to the port."""
    del rss_before  # measured before the first fuzzed call
    with server.channel() as public, grpc.insecure_channel(f"unix:{admin_socket}") as admin:
        yield public, admin


@pytest.fixture(scope="module")
def channel(channels: tuple[grpc.Channel, grpc.Channel]) -> grpc.Channel:
    return channels[0]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@settings(max_examples=EXAMPLES_PER_METHOD, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(data=st.data())
def test_no_input_gets_internal_or_unknown(
    channels: tuple[grpc.Channel, grpc.Channel], method: Method, data: st.DataObject
) -> None:
    messages = data.draw(payloads(method), label="messages")
    public, admin = channels
    code = call(admin if method.path.startswith(ADMIN_PREFIX) else public, method, messages)
    assert code not in FORBIDDEN, f"{method.path} answered {code.name}"


def test_the_server_is_alive_small_and_quiet_after_fuzzing(
    server: ServerProcess, channel: grpc.Channel, rss_before: int
) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert server.process.poll() is None
    growth = (psutil.Process(server.process.pid).memory_info().rss - rss_before) / 2**20
    assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth:.0f} MB under fuzzing"
    log = server.log()
    assert "Traceback" not in log and "DecodeError" not in log
