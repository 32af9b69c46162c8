"""Server settings: one object, from CLI flags with RECO_* environment-variable fallbacks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import reco.settings as flags
from server.core.recommend import MAX_K

BACKENDS = ("auto", "compiled", "onnx", "lightgbm")
SCORING_PATHS = ("auto", "native", "python")
# Below this, ordinary requests (a few hundred candidate ids, a Recommend answer with reasons
# and explanations) no longer fit; gRPC itself cannot go beyond 2 GiB - 1.
MIN_MESSAGE_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 2**31 - 1
# A bundle watcher polling faster than this only burns CPU on stat calls.
MIN_WATCH_SECONDS = 0.1
# Products one Recommend may score (the whole pool up to --catalog-limit, or the retrieved ones):
# beyond this a call costs tens of milliseconds and megabytes of rows.
MAX_CATALOG_LIMIT = 100_000
ADMIN_OFF = "none"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class Settings:
    """Everything the server reads at start-up; see `python -m server --help` for each one."""

    bundle: Path
    bundle_root: Path | None
    bundle_key_file: Path | None
    host: str
    port: int
    metrics_port: int
    tls_cert: Path | None
    tls_key: Path | None
    tls_client_ca: Path | None
    admin_address: str
    admin_token_file: Path | None
    admin_tls_client_ca: Path | None
    runtime_dir: Path | None
    backend: str
    scoring_path: str
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
    max_session_events: int
    max_session_bytes: int
    max_id_bytes: int
    max_event_age_seconds: float
    max_event_ahead_seconds: float
    require_durable_sessions: bool
    catalog_limit: int
    retrieval_size: int
    watch_seconds: float
    ab_bundle: Path | None
    ab_share: float
    explain: bool
    impression_log_dir: Path | None
    impression_log_redis: str
    impression_log_redis_maxlen: int
    impression_log_interval_seconds: float
    impression_log_queue: int
    impression_log_retention_hours: float
    impression_log_max_bytes: int
    explore_epsilon: dict[str, float]
    explore_seed: int | None
    log_level: str
    # Ecosystem (issue 14): the V2 model name, connection management, the probe port.
    inference_model_name: str
    keepalive_seconds: float
    keepalive_timeout_seconds: float
    min_client_ping_seconds: float
    max_connection_age_seconds: float
    max_connection_age_grace_seconds: float
    health_port: int

    @property
    def address(self) -> str:
        """host:port for the public gRPC listener (an IPv6 host in brackets)."""
        return self.address_on(self.port)

    def address_on(self, port: int) -> str:
        """host:port for a listener on --host (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{port}"

    @property
    def tls(self) -> bool:
        """The public port serves TLS."""
        return self.tls_cert is not None


def build_parser() -> flags.SettingsParser:
    """The CLI; every flag falls back to the RECO_<FLAG> environment variable, then the default."""
    p = flags.SettingsParser(
        prog="python -m server",
        description="Serve a model bundle over gRPC (reco.v1.Recommender, health, reflection) "
        "with Prometheus metrics on a separate HTTP port and reco.v1.Admin on a private "
        "listener. Every flag can also be set with the environment variable shown in brackets.",
    )
    p.add(
        "--bundle",
        flags.required_path,
        "artifacts/latest",
        "model bundle directory (a symlink is resolved at load, and watched)",
    )
    p.add(
        "--bundle-root",
        flags.optional_path,
        "",
        "bundles are loaded only from under this directory (symlinks resolved; unset = the "
        "directory holding what --bundle resolves to)",
    )
    p.add_flag(flags.BUNDLE_KEY_FILE, "; set, every bundle must carry a valid signature")
    p.add("--host", str, "127.0.0.1", "public listen address")
    p.add(
        "--port", flags.port(zero="picks a free one; one worker only"), "50051", "public gRPC port"
    )
    p.add(
        "--metrics-port",
        flags.port(disabled="disables it"),
        "9464",
        "Prometheus /metrics HTTP port, on --host",
    )
    p.add(
        "--tls-cert",
        flags.optional_path,
        "",
        "PEM certificate chain: the public port (and the admin listener) serve TLS",
    )
    p.add("--tls-key", flags.optional_path, "", "PEM private key of --tls-cert")
    p.add(
        "--tls-client-ca",
        flags.optional_path,
        "",
        "PEM CA bundle: the public port requires client certificates it signed (mTLS)",
    )
    p.add(
        "--admin-address",
        str,
        "",
        "reco.v1.Admin listener: unix:/path, 127.0.0.1:PORT, [::1]:PORT, host:PORT (needs "
        f"TLS and a credential), or '{ADMIN_OFF}' (unset = unix:<runtime dir>/admin-<port>.sock)",
    )
    p.add(
        "--admin-token-file",
        flags.optional_path,
        "",
        "file holding the bearer token Admin calls must send (authorization: Bearer ...)",
    )
    p.add(
        "--admin-tls-client-ca",
        flags.optional_path,
        "",
        "PEM CA bundle: Admin calls need a client certificate it signed (needs --tls-cert)",
    )
    p.add(
        "--runtime-dir",
        flags.optional_path,
        "",
        "private (0700) directory for the admin socket and verified bundle copies (unset = "
        "$XDG_RUNTIME_DIR/reco-server, else <tmp>/reco-server-<uid>)",
    )
    p.add(
        "--backend",
        flags.choice(*BACKENDS),
        "auto",
        "model backend; auto = the first of compiled, onnx, lightgbm that loads and passes "
        "the bundle's parity probe",
    )
    p.add(
        "--scoring-path",
        flags.choice(*SCORING_PATHS),
        "auto",
        "how Score and Recommend build and score rows: native = model.so's request kernel "
        "(rows built in C from product tables handed over at load, parity-checked at load; a "
        "bundle it cannot serve is refused), python = the numpy feature builder and the "
        "backend, auto = native wherever the bundle allows it (the compiled backend and the "
        "kernel's feature set), else python with one log line saying why",
    )
    p.add(
        "--workers",
        flags.integer(1, 256),
        "1",
        "server processes sharing the port with SO_REUSEPORT",
    )
    p.add(
        "--threads",
        flags.integer(1, 1024),
        "4",
        "threads per process for calls that wait on a remote session store (Redis); every "
        "other call runs on the event loop",
    )
    p.add(
        "--max-candidates",
        flags.integer(1),
        "1000",
        "most candidates (or feature rows) per Score request",
    )
    p.add(
        "--max-message-bytes",
        flags.integer(MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES),
        str(4 * 1024**2),
        "largest request/response message",
    )
    p.add(
        "--max-in-flight",
        flags.integer(1),
        "64",
        "unary RPCs being handled at once per process before RESOURCE_EXHAUSTED (calls on the "
        "in-process store run one at a time on the event loop; this bounds those waiting on "
        "Redis)",
    )
    p.add(
        "--max-open-streams",
        flags.integer(1),
        "256",
        "ScoreStream and StreamEvents calls open at once per process before "
        "RESOURCE_EXHAUSTED; apart from --max-in-flight, so idle streams never starve unary "
        "calls",
    )
    p.add(
        "--max-queue-ms",
        flags.number(0),
        "50",
        "load shedding: a call that waited longer than this in gRPC's queue before the server "
        "could take it is refused with RESOURCE_EXHAUSTED at once, so admitted calls keep their "
        "latency beyond capacity; 0 disables it",
    )
    p.add(
        "--stall-seconds",
        flags.number(positive=True),
        "2",
        "health turns NOT_SERVING while every unary slot has been taken, or the event loop has "
        "not run, for this long (and SERVING again once it recovers)",
    )
    p.add(
        "--grace-seconds",
        flags.number(0, 3600),
        "5",
        "on SIGTERM, how long in-flight RPCs may take to finish",
    )
    p.add(
        "--drain-seconds",
        flags.number(0, 3600),
        "1",
        "on SIGTERM, keep serving at least this long after health says NOT_SERVING, so calls "
        "already sent still arrive and load balancers notice (at most --grace-seconds)",
    )
    p.add(
        "--warmup-requests",
        flags.integer(0, 1_000_000),
        "200",
        "synthetic requests scored before reporting SERVING",
    )
    p.add(
        "--session-store",
        str,
        "memory",
        "'memory' (this process only), redis://host:port/db (shared by workers and replicas) "
        "or redis+cluster://host:port (a Redis Cluster, reached through any of its nodes)",
    )
    p.add(
        "--session-ttl-seconds",
        flags.number(positive=True),
        "1800",
        "a session idle this long is forgotten",
    )
    p.add(
        "--max-sessions",
        flags.integer(1),
        "100000",
        "in-process store: least recently used sessions beyond this are evicted",
    )
    p.add(
        "--max-session-events",
        flags.integer(1),
        "2000",
        "events one session may hold; beyond it TrackEvent answers RESOURCE_EXHAUSTED until "
        "the session expires or is forgotten",
    )
    p.add(
        "--max-session-bytes",
        flags.integer(1),
        str(256 * 1024),
        "bytes of event data (ids and strings) one session may hold; beyond it TrackEvent "
        "answers RESOURCE_EXHAUSTED",
    )
    p.add(
        "--max-id-bytes",
        flags.integer(1, 4096),
        "128",
        "longest event, session, product or customer id (and device type, traffic source) in "
        "UTF-8 bytes; longer is INVALID_ARGUMENT",
    )
    p.add(
        "--max-event-age-seconds",
        flags.number(positive=True),
        "86400",
        "events whose client_timestamp is older than this (by the server's clock) are "
        "INVALID_ARGUMENT",
    )
    p.add(
        "--max-event-ahead-seconds",
        flags.number(0),
        "300",
        "events whose client_timestamp is further ahead of the server's clock are INVALID_ARGUMENT",
    )
    p.add(
        "--require-durable-sessions",
        flags.boolean,
        "false",
        "refuse to start (exit 2) unless the Redis session store provably fsyncs every "
        "acknowledged event (appendonly yes, appendfsync always); the in-process store is "
        "never durable",
    )
    p.add(
        "--catalog-limit",
        flags.integer(MAX_K, MAX_CATALOG_LIMIT),
        "1000",
        "Recommend scores every eligible product while they are at most this many, else the "
        "--retrieval-size a retrieval stage finds for the session",
    )
    p.add(
        "--retrieval-size",
        flags.integer(MAX_K, MAX_CATALOG_LIMIT),
        "300",
        f"candidates the retrieval stage keeps (at least the largest k, {MAX_K}; at most "
        "--catalog-limit)",
    )
    p.add(
        "--watch-seconds",
        flags.number(0, 86400),
        "2",
        f"poll --bundle (e.g. the artifacts/latest symlink) this often (>= {MIN_WATCH_SECONDS}) "
        "and reload when it points elsewhere; 0 disables watching (SIGHUP and Admin "
        "ReloadModel still reload)",
    )
    p.add("--ab-bundle", flags.optional_path, "", "a second bundle served as variant B")
    p.add(
        "--ab-share",
        flags.number(),
        "0.5",
        "share of sessions routed to variant B (between 0 and 1), by a stable hash of the "
        "session id",
    )
    p.add(
        "--explain",
        flags.boolean,
        "false",
        "serve Recommend's explain (top feature contributions): LightGBM's booster is built at "
        "load from the verified model.txt (slower warm-up, more memory); off, explain is "
        "INVALID_ARGUMENT",
    )
    p.add(
        "--impression-log-dir",
        flags.optional_path,
        "",
        "write every Recommend response (and each Score asking for it), every recommendation "
        "click and purchase here, as Parquet files (one per interval and kind, renamed into "
        "place when complete); unset = no log",
    )
    p.add(
        "--impression-log-redis",
        str,
        "",
        "the shared log for several replicas: XADD every record to Redis Streams at this "
        "redis:// URL (python -m server.log_consumer writes them to the same Parquet files); "
        "exclusive with --impression-log-dir; unset = none",
    )
    p.add(
        "--impression-log-redis-maxlen",
        flags.integer(1),
        "100000",
        "approximate cap of each log stream (XADD MAXLEN ~): entries beyond it that no "
        "consumer wrote yet are lost (the consumer reports them)",
    )
    p.add(
        "--impression-log-interval-seconds",
        flags.number(positive=True),
        "10",
        "how often the log writer cuts a file (sooner when its queue is half full)",
    )
    p.add(
        "--impression-log-queue",
        flags.integer(1),
        "10000",
        "records held until they are in a complete file; beyond it new records are dropped "
        "(counted), and a killed server loses at most this many",
    )
    p.add(
        "--impression-log-retention-hours",
        flags.number(0),
        "0",
        "delete log files older than this (0 = keep them)",
    )
    p.add(
        "--impression-log-max-bytes",
        flags.integer(0),
        "0",
        "delete the oldest log files beyond this total size (0 = no limit)",
    )
    p.add(
        "--explore-epsilon",
        variant_values,
        "",
        "slate-level epsilon-greedy exploration in Recommend: one epsilon for every variant "
        "(0.1) or per variant (A=0.1,B=0); unset = none. Each shown slot's propensity is "
        "logged and answered",
    )
    p.add(
        "--explore-seed",
        flags.optional(flags.integer()),
        "",
        "seed of the exploration draws (unset = random; set, runs repeat exactly)",
    )
    p.add_flag(flags.LOG_LEVEL)
    _add_ecosystem(p)
    return p


def variant_values(text: str) -> dict[str, float]:
    """'0.1' (every variant) or 'A=0.1,B=0' -> {variant: epsilon}, each in [0, 1]."""
    if not text.strip():
        return {}
    pairs = [part.split("=", 1) if "=" in part else ["", part] for part in text.split(",")]
    values: dict[str, float] = {}
    for name, value in pairs:
        try:
            epsilon = float(value)
        except ValueError:
            raise ValueError("must be a number in [0, 1] or variant=number pairs") from None
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("must be a number in [0, 1] or variant=number pairs")
        for variant in [name.strip()] if name else ["A", "B"]:
            values[variant] = epsilon
    return values


def _add_ecosystem(p: flags.SettingsParser) -> None:
    """The Open Inference Protocol's model name, connection management for load balancers, and
    the plaintext health port for Kubernetes' native gRPC probes."""
    p.add(
        "--inference-model-name",
        str,
        "reco",
        "the model name of the Open Inference Protocol (KServe V2) service on the public port",
    )
    p.add(
        "--keepalive-seconds",
        flags.number(0),
        "60",
        "ping a client connection with calls open after this long without activity, so dead "
        "peers (and the stream slots they hold) are found; 0 = gRPC's default (2 hours)",
    )
    p.add(
        "--keepalive-timeout-seconds",
        flags.number(positive=True),
        "20",
        "close a connection whose keepalive ping is unanswered this long",
    )
    p.add(
        "--min-client-ping-seconds",
        flags.number(0),
        "10",
        "clients may send keepalive pings this often, with or without calls in flight; more "
        "often is answered with GOAWAY (too_many_pings)",
    )
    p.add(
        "--max-connection-age-seconds",
        flags.number(0),
        "300",
        "send GOAWAY to a client connection after about this long (gRPC adds +-10% jitter), "
        "so long-lived channels reconnect and spread over replicas behind an L4 load balancer "
        "(a Kubernetes Service); calls in flight finish first; 0 = never",
    )
    p.add(
        "--max-connection-age-grace-seconds",
        flags.number(0),
        "0",
        "after that GOAWAY, how long calls and streams still open may take before the "
        "connection is closed; 0 = as long as they take (long ScoreStream calls are never cut)",
    )
    p.add(
        "--health-port",
        flags.port(disabled="off"),
        "-1",
        "a plaintext listener on --host serving only grpc.health.v1, for probes that cannot "
        "speak TLS (Kubernetes' native gRPC probes) when the public port serves TLS",
    )


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from argv (default sys.argv) and the environment, every value and every rule
    between values checked; raises flags.SettingError (one line naming the setting) otherwise.

    Nothing here touches the file system or the network: server.preflight checks files and
    listeners before anything is loaded."""
    parser = build_parser()
    values = parser.parse(argv, environ)
    settings = Settings(**values)
    _check_rules(settings, parser)
    return settings


def _check_rules(s: Settings, parser: flags.SettingsParser) -> None:
    """The rules between settings, each failure naming every setting involved."""
    name = parser.source
    if not 0.0 < s.ab_share < 1.0:
        raise flags.SettingError(
            f"{name('ab_share')} must be between 0 and 1 (exclusive), got {s.ab_share:g}"
        )
    if 0 < s.watch_seconds < MIN_WATCH_SECONDS:
        raise flags.SettingError(
            f"{name('watch_seconds')} must be 0 (off) or >= {MIN_WATCH_SECONDS}, "
            f"got {s.watch_seconds:g}"
        )
    if s.drain_seconds > s.grace_seconds:
        raise flags.SettingError(
            f"{name('drain_seconds')} ({s.drain_seconds:g}) must be <= "
            f"{name('grace_seconds')} ({s.grace_seconds:g})"
        )
    # Retrieval scores retrieval_size products instead of a pool larger than catalog_limit:
    # more than the limit would cost more than scoring the pool it stands for.
    if s.retrieval_size > s.catalog_limit:
        raise flags.SettingError(
            f"{name('retrieval_size')} ({s.retrieval_size}) must be <= "
            f"{name('catalog_limit')} ({s.catalog_limit})"
        )
    if s.metrics_port > 0 and s.metrics_port == s.port:
        raise flags.SettingError(f"{name('metrics_port')} and {name('port')} are both {s.port}")
    if s.health_port > 0 and s.health_port in (s.port, s.metrics_port):
        other = name("port") if s.health_port == s.port else name("metrics_port")
        raise flags.SettingError(
            f"{name('health_port')} {s.health_port} is already used by {other}"
        )
    if not s.inference_model_name:
        raise flags.SettingError(f"{name('inference_model_name')} must not be empty")
    if s.workers > 1 and s.port == 0:
        raise flags.SettingError(
            f"{name('port')} 0 cannot be shared by {s.workers} workers; give a port"
        )
    if not s.host:
        raise flags.SettingError(f"{name('host')} must not be empty")
    _check_store(s, name)
    _check_log(s, name)
    _check_tls(s, name)


def _check_store(s: Settings, name: Callable[[str], str]) -> None:
    store = s.session_store
    schemes = (*REDIS_SCHEMES, "redis+cluster://", "rediss+cluster://")
    if store != "memory" and not store.startswith(schemes):
        raise flags.SettingError(
            f"{name('session_store')} must be 'memory', a redis:// URL or a redis+cluster:// "
            f"URL, got {store.split('://')[0]!r}..."
        )
    if "+cluster://" in store and urlsplit(store).path.strip("/") not in ("", "0"):
        raise flags.SettingError(f"{name('session_store')}: a Redis Cluster has only database 0")
    if store == "memory" and s.require_durable_sessions:
        raise flags.SettingError(
            f"{name('require_durable_sessions')}: the in-process session store loses every "
            "session when the process stops; use --session-store redis://host:port/db with "
            "appendonly yes and appendfsync always"
        )
    if store == "memory" and s.workers > 1:
        raise flags.SettingError(
            f"{name('workers')} {s.workers} with the in-process session store would split each "
            "session across processes; use --session-store redis://host:port/db (or --workers 1)"
        )


def _check_log(s: Settings, name: Callable[[str], str]) -> None:
    url = s.impression_log_redis
    if url and not url.startswith(REDIS_SCHEMES):
        raise flags.SettingError(
            f"{name('impression_log_redis')} must be a redis:// URL, got {url.split('://')[0]!r:.20}..."
        )
    if url and s.impression_log_dir is not None:
        raise flags.SettingError(
            f"{name('impression_log_dir')} and {name('impression_log_redis')} are exclusive: "
            "with Redis, the log consumer writes the files"
        )


def _check_tls(s: Settings, name: Callable[[str], str]) -> None:
    if (s.tls_cert is None) != (s.tls_key is None):
        raise flags.SettingError(f"{name('tls_cert')} and {name('tls_key')} must be given together")
    if s.tls_client_ca is not None and s.tls_cert is None:
        raise flags.SettingError(
            f"{name('tls_client_ca')} needs --tls-cert and --tls-key (the server's own certificate)"
        )
    if s.admin_tls_client_ca is not None and s.tls_cert is None:
        raise flags.SettingError(
            f"{name('admin_tls_client_ca')} needs --tls-cert and --tls-key "
            "(the server's own certificate)"
        )
