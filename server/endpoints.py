"""Admin listener addresses: unix:/path or host:port, which ones are loopback, per worker."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path

# sockaddr_un.sun_path holds 108 bytes, the last one a NUL.
MAX_UNIX_PATH_BYTES = 107


@dataclass(frozen=True)
class Endpoint:
    """Where a gRPC server listens: a Unix socket path, or a TCP host and port."""

    unix_path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def address(self) -> str:
        """The address as grpc's add_*_port takes it."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        """Reachable only from this machine (a Unix socket or a loopback address)."""
        return self.unix_path is not None or is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether a host (name or literal address) is this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


def parse_endpoint(text: str) -> Endpoint:
    """unix:/absolute/path, host:port or [v6]:port; raises ValueError naming the requirement."""
    if text.startswith("unix:"):
        path = Path(text.removeprefix("unix:").removeprefix("//"))
        if not path.is_absolute():
            raise ValueError("must be unix:/absolute/path")
        if len(str(path).encode()) > MAX_UNIX_PATH_BYTES:
            raise ValueError(f"must be a socket path of at most {MAX_UNIX_PATH_BYTES} bytes")
        return Endpoint(unix_path=path)
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("must be unix:/path, host:port (port 0-65535) or none")
    return Endpoint(host=host, port=int(port_text))


def default_admin_endpoint(runtime_dir: Path, public_port: int) -> Endpoint:
    """unix:<runtime dir>/admin-<public port>.sock: one per server on this machine."""
    return Endpoint(unix_path=runtime_dir / f"admin-{public_port}.sock")


def for_worker(endpoint: Endpoint, index: int) -> Endpoint:
    """Worker `index`'s own admin endpoint: a Unix socket gets a .<index> suffix, a TCP port
    is offset by the index (workers cannot share one admin listener: each holds its models)."""
    if endpoint.unix_path is not None:
        path = endpoint.unix_path
        return Endpoint(unix_path=path.with_name(f"{path.stem}.{index}{path.suffix}"))
    return replace(endpoint, port=endpoint.port + index)
