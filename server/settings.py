"""Server settings: one object, from CLI flags with RECO_* environment-variable fallbacks."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("auto", "compiled", "onnx", "lightgbm")
TRANSPORTS = ("sync", "aio")


@dataclass(frozen=True)
class Settings:
    """Everything the server reads at start-up; see `python -m server --help` for each one."""

    bundle: Path
    host: str
    port: int
    metrics_port: int
    backend: str
    workers: int
    transport: str
    threads: int
    max_candidates: int
    max_message_bytes: int
    max_in_flight: int
    grace_seconds: float
    warmup_requests: int
    log_level: str

    @property
    def address(self) -> str:
        """host:port for the gRPC listener."""
        return f"{self.host}:{self.port}"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"RECO_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    """The CLI; every flag falls back to the RECO_<FLAG> environment variable, then the default."""
    p = argparse.ArgumentParser(
        prog="python -m server",
        description="Serve a model bundle over gRPC (reco.v1.Recommender, health, reflection) "
        "with Prometheus metrics on a separate HTTP port. Every flag can also be set with the "
        "environment variable shown in brackets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--bundle",
        type=Path,
        default=Path(_env("BUNDLE", "artifacts/latest")),
        help="model bundle directory (a symlink is resolved at load) [RECO_BUNDLE]",
    )
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="listen address [RECO_HOST]")
    p.add_argument(
        "--port",
        type=int,
        default=int(_env("PORT", "50051")),
        help="gRPC port; 0 picks a free one [RECO_PORT]",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "9464")),
        help="Prometheus /metrics HTTP port; -1 disables it [RECO_METRICS_PORT]",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=_env("BACKEND", "auto"),
        help="model backend; auto = the first of compiled, onnx, lightgbm that loads "
        "and passes the bundle's parity probe [RECO_BACKEND]",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(_env("WORKERS", "1")),
        help="server processes sharing the port with SO_REUSEPORT [RECO_WORKERS]",
    )
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=_env("TRANSPORT", "sync"),
        help="grpc's thread-pool server (sync) or grpc.aio [RECO_TRANSPORT]",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(_env("THREADS", "4")),
        help="handler threads per process (sync transport) [RECO_THREADS]",
    )
    p.add_argument(
        "--max-candidates",
        type=int,
        default=int(_env("MAX_CANDIDATES", "1000")),
        help="most candidates (or feature rows) per Score request [RECO_MAX_CANDIDATES]",
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(_env("MAX_MESSAGE_BYTES", str(4 * 1024 * 1024))),
        help="largest request/response message [RECO_MAX_MESSAGE_BYTES]",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=int(_env("MAX_IN_FLIGHT", "64")),
        help="RPCs queued or running per process before RESOURCE_EXHAUSTED [RECO_MAX_IN_FLIGHT]",
    )
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=float(_env("GRACE_SECONDS", "5")),
        help="on SIGTERM, how long in-flight RPCs may take to finish [RECO_GRACE_SECONDS]",
    )
    p.add_argument(
        "--warmup-requests",
        type=int,
        default=int(_env("WARMUP_REQUESTS", "200")),
        help="synthetic requests scored before reporting SERVING [RECO_WARMUP_REQUESTS]",
    )
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"), help="[RECO_LOG_LEVEL]")
    return p


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from argv (default sys.argv), validated."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("workers", "threads", "max_candidates", "max_message_bytes", "max_in_flight"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return Settings(**vars(args))
