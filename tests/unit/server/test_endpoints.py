"""Admin listener addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.endpoints import Endpoint, default_admin_endpoint, for_worker, parse_endpoint


def test_unix_and_tcp_endpoints() -> None:
    unix = parse_endpoint("unix:/run/reco/admin.sock")
    assert unix.unix_path == Path("/run/reco/admin.sock") and unix.loopback
    assert unix.address == "unix:/run/reco/admin.sock"
    assert parse_endpoint("127.0.0.1:7000") == Endpoint(host="127.0.0.1", port=7000)
    v6 = parse_endpoint("[::1]:7000")
    assert v6.host == "::1" and v6.loopback and v6.address == "[::1]:7000"
    assert parse_endpoint("localhost:1").loopback
    assert not parse_endpoint("0.0.0.0:7000").loopback
    assert not parse_endpoint("admin.internal:7000").loopback


@pytest.mark.parametrize(
    "text", ["unix:relative.sock", "unix:/" + "x" * 200, "7000", "host:", "host:70000", ":1"]
)
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_endpoint(text)


def test_each_worker_gets_its_own_admin_endpoint() -> None:
    unix = default_admin_endpoint(Path("/run/reco"), 50051)
    assert unix.address == "unix:/run/reco/admin-50051.sock"
    assert for_worker(unix, 1).address == "unix:/run/reco/admin-50051.1.sock"
    assert for_worker(parse_endpoint("127.0.0.1:7000"), 2).port == 7002
