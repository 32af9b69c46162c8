"""Real server and redis-server processes on free ports, awaited through their health checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from loadtest import probe

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A plaintext channel, or a TLS one with `credentials`."""
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def wait_for_health(
    target: str,
    want: int = SERVING,
    timeout: float = 120.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Blocks on the health service's Watch stream until the whole server ("") reports `want`
    (loadtest.probe.wait_for_health, the project's one health wait)."""
    probe.wait_for_health(target, timeout, want, "", credentials=credentials)


class ServerProcess:
    """`python -m server` in a subprocess; logs go to a file shown when a test fails."""

    def __init__(
        self,
        bundle: Path,
        *extra: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.credentials = credentials  # for a server with TLS on its public port
        self.port = free_port()
        self.metrics_port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{self.port}.log"
        args = [
            sys.executable, "-m", "server", "--bundle", str(bundle), "--host", "127.0.0.1",
            "--port", str(self.port), "--metrics-port", str(self.metrics_port),
            "--warmup-requests", "20", *extra,
        ]  # fmt: skip
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_serving(self, timeout: float = 120.0) -> ServerProcess:
        """Returns once the health service says SERVING (fails fast if the process died)."""
        try:
            probe.wait_for_health(self.target, timeout, probe.SERVING, "", self.process,
                                  self.credentials)  # fmt: skip
        except Exception:
            raise AssertionError(f"server did not become healthy; log:\n{self.log()}") from None
        return self

    def log(self) -> str:
        """Everything the server printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def channel(self) -> grpc.Channel:
        """A new channel to the server."""
        return open_channel(self.target, self.credentials)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# How the docs (README "Sessions") require Redis to run for no acknowledged event to be lost.
DURABLE_REDIS = ("--appendonly", "yes", "--appendfsync", "always")


class RedisExited(RuntimeError):
    """A redis-server exited before answering PING (its log's last lines say why)."""


def wait_for_redis(
    process: subprocess.Popen[bytes], client: Any, log: Path, timeout: float = 20
) -> None:
    """Until a redis-server answers PING (after loading its append-only file, if any). One
    that exited first (e.g. its port, free when picked, was taken since) raises RedisExited."""
    import redis

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.ConnectionError):  # BusyLoadingError included
            if client.ping():
                return
        if process.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.is_file() else []
            raise RedisExited(f"redis-server exited ({process.returncode}): {tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server did not answer PING within {timeout:g} s")
        time.sleep(0.05)  # polling a service that has no readiness stream to wait on


class RedisServer:
    """A throwaway redis-server on a free port: no persistence unless `config` asks for it
    (e.g. DURABLE_REDIS); its files live in its own directory under log_dir."""

    def __init__(self, log_dir: Path, *config: str, password: str = "") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(
                "redis-server is not installed (apt-get install -y redis-server)"
            )
        self.binary = binary
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.log_dir = log_dir
        self.data_dir = log_dir / f"redis-{self.port}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config or ("--save", "", "--appendonly", "no")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def client(self) -> Any:
        """A redis-py client for the test itself."""
        import redis

        return redis.Redis(port=self.port, password=self.password or None,
                           socket_connect_timeout=0.2)  # fmt: skip

    def start(self) -> None:
        """Starts (or restarts) the server on the same port and waits until it answers PING
        (after loading its append-only file, if any)."""

        auth = ("--requirepass", self.password) if self.password else ()
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.data_dir), *auth, *self.config,
             "--logfile", str(self.log_dir / f"redis-{self.port}.log")],
        )  # fmt: skip
        wait_for_redis(self.process, self.client(), self.log_dir / f"redis-{self.port}.log")

    def stop(self) -> None:
        """Stops the server (its data goes with it unless it persists)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        """kill -9: no shutdown, no final save; only what is already on disk survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def running(
    bundle: Path,
    *extra: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> Iterator[ServerProcess]:
    """A healthy server for the duration of a with-block."""
    with ServerProcess(bundle, *extra, log_dir=log_dir, env=env, credentials=credentials) as server:
        yield server.wait_serving()


class InProcessServer:
    """The real server (server.app.serve) on a thread of this process, for tests that reach
    inside it (a broken scorer, a hanging store). Metrics go to a registry of its own, read
    with `metric()`."""

    def __init__(self, bundle: Path, *extra: str) -> None:
        from prometheus_client import CollectorRegistry

        from server.app import App
        from server.metrics import Metrics
        from server.settings import parse_settings

        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.settings = parse_settings(
            ["--bundle", str(bundle), "--port", str(self.port), "--metrics-port", "-1",
             "--watch-seconds", "0", "--warmup-requests", "5", *extra]
        )  # fmt: skip
        self.registry = CollectorRegistry()
        self.app = App(self.settings, Metrics(self.registry))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from server.app import serve

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await serve(self.settings, self.app, self._stop)

        asyncio.run(main())

    def metric(self, name: str, **labels: str) -> float | None:
        """The current value of one sample of the server's metrics."""
        return self.registry.get_sample_value(name, labels)

    def channel(self) -> grpc.Channel:
        """A new channel to the server."""
        return grpc.insecure_channel(self.target)

    def __enter__(self) -> InProcessServer:
        self._thread.start()
        self._started.wait(30)
        wait_for_health(self.target)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
