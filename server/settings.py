"""Server settings: one object, from CLI flags with RECO_* environment-variable fallbacks."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("auto", "compiled", "onnx", "lightgbm")


@dataclass(frozen=True)
class Settings:
    """Everything the server reads at start-up; see `python -m server --help` for each one."""

    bundle: Path
    host: str
    port: int
    metrics_port: int
    backend: str
    workers: int
    threads: int
    max_candidates: int
    max_message_bytes: int
    max_in_flight: int
    max_open_streams: int
    max_queue_ms: float
    stall_seconds: float
    grace_seconds: float
    drain_seconds: float
    warmup_requests: int
    session_store: str
    session_ttl_seconds: float
    max_sessions: int
    catalog_limit: int
    retrieval_size: int
    watch_seconds: float
    ab_bundle: Path | None
    ab_share: float
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
        "--threads",
        type=int,
        default=int(_env("THREADS", "4")),
        help="threads per process for calls that wait on a remote session store (Redis); "
        "every other call runs on the event loop [RECO_THREADS]",
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
        help="unary RPCs being handled at once per process before RESOURCE_EXHAUSTED (calls on "
        "the in-process store run one at a time on the event loop; this bounds those waiting "
        "on Redis) [RECO_MAX_IN_FLIGHT]",
    )
    p.add_argument(
        "--max-open-streams",
        type=int,
        default=int(_env("MAX_OPEN_STREAMS", "256")),
        help="ScoreStream and StreamEvents calls open at once per process before "
        "RESOURCE_EXHAUSTED; apart from --max-in-flight, so idle streams never starve unary "
        "calls [RECO_MAX_OPEN_STREAMS]",
    )
    p.add_argument(
        "--max-queue-ms",
        type=float,
        default=float(_env("MAX_QUEUE_MS", "50")),
        help="load shedding: a call that waited longer than this in gRPC's queue before the "
        "server could take it is refused with RESOURCE_EXHAUSTED at once, so admitted calls "
        "keep their latency beyond capacity; 0 disables it [RECO_MAX_QUEUE_MS]",
    )
    p.add_argument(
        "--stall-seconds",
        type=float,
        default=float(_env("STALL_SECONDS", "2")),
        help="health turns NOT_SERVING while every unary slot has been taken, or the event "
        "loop has not run, for this long (and SERVING again once it recovers) "
        "[RECO_STALL_SECONDS]",
    )
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=float(_env("GRACE_SECONDS", "5")),
        help="on SIGTERM, how long in-flight RPCs may take to finish [RECO_GRACE_SECONDS]",
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=float(_env("DRAIN_SECONDS", "1")),
        help="on SIGTERM, keep serving at least this long after health says NOT_SERVING, so "
        "calls already sent still arrive and load balancers notice (within --grace-seconds) "
        "[RECO_DRAIN_SECONDS]",
    )
    p.add_argument(
        "--warmup-requests",
        type=int,
        default=int(_env("WARMUP_REQUESTS", "200")),
        help="synthetic requests scored before reporting SERVING [RECO_WARMUP_REQUESTS]",
    )
    p.add_argument(
        "--session-store",
        default=_env("SESSION_STORE", "memory"),
        help="'memory' (this process only) or redis://host:port/db (shared by workers "
        "and replicas) [RECO_SESSION_STORE]",
    )
    p.add_argument(
        "--session-ttl-seconds",
        type=float,
        default=float(_env("SESSION_TTL_SECONDS", "1800")),
        help="a session idle this long is forgotten [RECO_SESSION_TTL_SECONDS]",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=int(_env("MAX_SESSIONS", "100000")),
        help="in-process store: least recently used sessions beyond this are evicted "
        "[RECO_MAX_SESSIONS]",
    )
    p.add_argument(
        "--catalog-limit",
        type=int,
        default=int(_env("CATALOG_LIMIT", "1000")),
        help="Recommend scores the whole catalog up to this many products, else a "
        "retrieval stage picks --retrieval-size of them [RECO_CATALOG_LIMIT]",
    )
    p.add_argument(
        "--retrieval-size",
        type=int,
        default=int(_env("RETRIEVAL_SIZE", "300")),
        help="candidates the retrieval stage keeps [RECO_RETRIEVAL_SIZE]",
    )
    p.add_argument(
        "--watch-seconds",
        type=float,
        default=float(_env("WATCH_SECONDS", "2")),
        help="poll --bundle (e.g. the artifacts/latest symlink) this often and reload "
        "when it points elsewhere; 0 disables watching (SIGHUP and the Admin "
        "ReloadModel RPC still reload) [RECO_WATCH_SECONDS]",
    )
    p.add_argument(
        "--ab-bundle",
        type=Path,
        default=_optional_path(_env("AB_BUNDLE", "")),
        help="a second bundle served as variant B [RECO_AB_BUNDLE]",
    )
    p.add_argument(
        "--ab-share",
        type=float,
        default=float(_env("AB_SHARE", "0.5")),
        help="share of sessions routed to variant B, by a stable hash of the session "
        "id [RECO_AB_SHARE]",
    )
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"), help="[RECO_LOG_LEVEL]")
    return p


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from argv (default sys.argv), validated."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("workers", "threads", "max_candidates", "max_message_bytes", "max_in_flight",
                 "max_open_streams", "max_sessions", "catalog_limit",
                 "retrieval_size"):  # fmt: skip
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_queue_ms < 0:
        parser.error(f"--max-queue-ms must be >= 0 (0 = off), got {args.max_queue_ms}")
    if not args.stall_seconds > 0:
        parser.error(f"--stall-seconds must be > 0, got {args.stall_seconds}")
    if not 0.0 < args.ab_share < 1.0:
        parser.error(f"--ab-share must be between 0 and 1 (exclusive), got {args.ab_share}")
    store = args.session_store
    if store != "memory" and not store.startswith(("redis://", "rediss://", "unix://")):
        parser.error(f"--session-store must be 'memory' or a redis:// URL, got {store!r}")
    if store == "memory" and args.workers > 1:
        parser.error(
            f"--workers {args.workers} with the in-process session store would split each "
            "session across processes; use --session-store redis://host:port/db (or --workers 1)"
        )
    return Settings(**vars(args))
