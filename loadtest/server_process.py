"""Starting and stopping a scoring server for a one-command run (--start-server, comparisons).

The command that starts a server lives here only: SERVER_COMMAND_ENV (or --server-cmd) replaces
the default `python -m server`, e.g. with the fake server the tests use. Whatever the command,
the tool appends --bundle, --host, --port, --metrics-port and --backend.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from loadtest.probe import TargetNotReadyError, wait_for_serving
from reco.settings import SettingsParser, optional_path, required_path

logger = logging.getLogger(__name__)

SERVER_COMMAND_ENV = "RECO_LOADTEST_SERVER_CMD"
DEFAULT_SERVER_COMMAND = f"{shlex.quote(sys.executable)} -m server"
STOP_GRACE_S = 15.0
_LOG_TAIL_CHARS = 3000


def default_server_command() -> str:
    """The server command: $RECO_LOADTEST_SERVER_CMD, else `<this python> -m server`."""
    return os.environ.get(SERVER_COMMAND_ENV) or DEFAULT_SERVER_COMMAND


def checkout_command(directory: Path | None, *program: str) -> str:
    """A command running `program` (e.g. "-m", "server") with this Python, from another
    checkout's directory so that its code is imported first (None: this checkout)."""
    command = shlex.join([sys.executable, *program])
    if directory is None:
        return command
    return f"env -C {shlex.quote(str(directory.resolve()))} {command}"


def baseline_parser(prog: str, doc: str | None) -> SettingsParser:
    """The flags every before/after benchmark takes: --bundle and --baseline-dir."""
    parser = SettingsParser(prog, doc or "", env_prefix="RECO_BENCH_")
    parser.add("--bundle", required_path, "artifacts/latest", "model bundle the servers load")
    parser.add(
        "--baseline-dir",
        optional_path,
        "",
        "another checkout (e.g. `git archive` of main into a directory), measured first in the "
        "same run",
    )
    return parser


def checkouts(baseline_dir: Path | None, *program: str) -> list[tuple[str, str]]:
    """(label, command) of the baseline checkout (when given) and this one, in that order."""
    here = [("this checkout", checkout_command(None, *program))]
    if baseline_dir is None:
        return here
    return [(f"baseline ({baseline_dir.name})", checkout_command(baseline_dir, *program)), *here]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: the command prefix and the flags the tool appends."""

    bundle: Path
    backend: str = "auto"
    command: str = field(default_factory=default_server_command)
    host: str = "127.0.0.1"
    ready_timeout_s: float = 180.0
    # More server flags, e.g. ("--workers", "2", "--session-store", "redis://...").
    extra_args: tuple[str, ...] = ()

    def argv(self, port: int, metrics_port: int) -> list[str]:
        """The full command line for a server on `port`."""
        return [
            *shlex.split(self.command),
            "--bundle",
            str(self.bundle),
            "--host",
            self.host,
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--backend",
            self.backend,
            *self.extra_args,
        ]


class ManagedServer:
    """A server subprocess on free ports: started, awaited on its health service, then stopped.

    Use as a context manager; the server's output goes to `log_path`.
    """

    def __init__(self, spec: ServerSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.port = 0
        self.metrics_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """host:port of the running server."""
        return f"{self.spec.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The server process id (while it runs)."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def start(self) -> ManagedServer:
        """Starts the server and returns once it reports SERVING (raises TargetNotReadyError)."""
        self.port = free_port(self.spec.host)
        self.metrics_port = free_port(self.spec.host)
        argv = self.spec.argv(self.port, self.metrics_port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting server: %s (log: %s)", shlex.join(argv), self.log_path)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_serving(self.target, self.spec.ready_timeout_s, process=self._process)
        except TargetNotReadyError as exc:
            self.stop()
            raise TargetNotReadyError(
                f"{exc}\ncommand: {shlex.join(argv)}\nlast server output:\n{self.log_tail()}"
            ) from None
        logger.info("server SERVING on %s (backend %s)", self.target, self.spec.backend)
        return self

    def log_tail(self) -> str:
        """The end of the server's output, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it does not exit in STOP_GRACE_S."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning(
                "server pid %s ignored SIGTERM for %s s; killing it", process.pid, STOP_GRACE_S
            )
            process.kill()
            process.wait()

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
