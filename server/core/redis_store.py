"""The Redis session store: each session's folded state, shared by processes and replicas."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, SlotNotCoveredError, TryAgainError
from redis.retry import Retry

from server.core.errors import Unavailable
from server.core.sessions import (
    DEFAULT_LIMITS,
    Event,
    Folded,
    SessionLimits,
    SessionState,
    Tracked,
    absorb,
    check_room,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Stores the new folded state only if nobody changed the session since it was read (its version
# is unchanged) and the event id is new; both checks and the write are one atomic script.
# Returns 0 = stored, 1 = duplicate (with the stored state), 2 = changed meanwhile (re-read).
_STORE_IF_UNCHANGED = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then
  return {1, redis.call('HGET', KEYS[1], 's')}
end
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[1] then return {2} end
redis.call('HSET', KEYS[1], 's', ARGV[3], 'f', ARGV[4], 'v', tonumber(ARGV[1]) + 1)
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {0}
"""
_STORED, _DUPLICATE, _CHANGED = 0, 1, 2
# Concurrent trackers of one session re-read and retry; each retry means another process made
# progress, so this bound is only reached under pathological contention.
_MAX_CONFLICTS = 50
_RETRY_HINT = "the call did not complete; retry it (events are deduplicated by event_id)"
# redis+cluster:// (rediss+cluster:// with TLS): a Redis Cluster, reached through any one node.
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# Worth another attempt: the connection failed, or a cluster is failing over (its slots move).
_TRANSIENT = (
    redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError,
    SlotNotCoveredError,
)  # fmt: skip


class SessionStoreUnavailable(Unavailable):
    """The session store cannot be reached; nothing was stored."""


class SessionStoreNotDurable(Unavailable):
    """--require-durable-sessions and Redis does not (provably) persist every acknowledged event."""


def redacted(url: str) -> str:
    """The URL without its password (and, for a Unix socket, without the directories)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        name = parts.path.rsplit("/", 1)[-1]
        return f"unix://.../{name}"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))


@dataclass(frozen=True)
class Persistence:
    """What Redis says about its persistence, read at start (CONFIG GET)."""

    verified: bool  # False: CONFIG GET was refused or Redis was unreachable
    appendonly: str = ""
    appendfsync: str = ""
    save: str = ""
    version: str = ""
    reason: str = ""  # why it could not be verified
    nodes: int = 1  # the Redis servers asked (every node of a cluster): this is the weakest

    @property
    def durable(self) -> bool:
        """Every acknowledged write is fsynced to the append-only file before the reply."""
        return self.verified and self.appendonly == "yes" and self.appendfsync == "always"

    def describe(self) -> str:
        """One line for the log: the settings and what they mean for acknowledged events."""
        if not self.verified:
            return (
                f"cannot verify Redis persistence ({self.reason}); acknowledged events survive a "
                "Redis restart only if it runs with appendonly yes and appendfsync always"
            )
        settings = f"appendonly {self.appendonly}, appendfsync {self.appendfsync}"
        if self.nodes > 1:
            settings += f" (the weakest of {self.nodes} cluster nodes)"
        if self.durable:
            return f"Redis persistence: {settings}: every acknowledged event is on disk"
        if self.appendonly != "yes":
            snapshots = f"RDB snapshots only (save '{self.save}')" if self.save else "no snapshots"
            return (
                f"Redis persistence: {settings}, {snapshots}: acknowledged events are LOST when "
                "Redis restarts or is killed; set appendonly yes and appendfsync always"
            )
        if self.appendfsync == "everysec":
            return (
                f"Redis persistence: {settings}: up to about 1 s of acknowledged events can be "
                "lost on a power cut or OS crash (or a kill while an fsync stalls); set "
                "appendfsync always for no loss"
            )
        return (
            f"Redis persistence: {settings}: the OS flushes the append-only file when it likes "
            "(often 30 s): acknowledged events can be lost on a power cut or OS crash; set "
            "appendfsync always for no loss"
        )


def is_cluster(url: str) -> bool:
    """Whether a URL names a Redis Cluster (redis+cluster:// or rediss+cluster://)."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def redis_client(url: str, timeout_seconds: float) -> Any:
    """A client for a redis://, rediss://, unix:// or redis+cluster:// URL (RedisCluster for
    the last) whose retries are the caller's (each user of Redis bounds them by its own
    deadline or backoff)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), 0),
    }
    if is_cluster(url):
        return RedisCluster.from_url(url.replace("+cluster", "", 1), **options)
    return redis.Redis.from_url(url, **options)


def read_persistence(client: Any, cluster: bool = False) -> Persistence:
    """Reads appendonly, appendfsync and save with CONFIG GET (refused by many managed Redis
    services: then it cannot be verified). In a cluster every node is asked (replicas too: one
    is promoted when its primary fails) and the weakest answer counts."""
    try:
        if not cluster:
            return _node_persistence(client, {})
        found = [_node_persistence(client, {"target_nodes": node}) for node in client.get_nodes()]
    except redis.ConnectionError as exc:
        return Persistence(False, reason=f"Redis is unreachable: {_reason(exc)}")
    except redis.RedisError as exc:
        return Persistence(False, reason=f"CONFIG GET was refused: {_scrub(exc)}")
    weakest = next((p for p in found if not p.durable), found[0])
    return replace(weakest, nodes=len(found))


def _node_persistence(client: Any, target: dict[str, Any]) -> Persistence:
    config: dict[str, str] = {}
    for name in ("appendonly", "appendfsync", "save"):
        config.update(_text_dict(client.config_get(name, **target)))
    version = str(_text_dict(client.info("server", **target)).get("redis_version", ""))
    return Persistence(
        True, config.get("appendonly", ""), config.get("appendfsync", ""),
        config.get("save", ""), version,
    )  # fmt: skip


class RedisStore:
    """Per session, a hash {s: state, f: folded tail and base, v: version} and a set of its
    event ids, both with the session TTL, refreshed on every event. Keys share a hash tag, so
    they live on one Redis Cluster slot.

    track reads the folded session and its dedup bit (one round trip), absorbs the event in
    Python (the same sessions.absorb as the in-process store) and stores it with a script that
    checks the version and the event id atomically (a second round trip): concurrent trackers
    in several processes never lose or double-apply an event; the loser re-reads and retries.
    get reads only the state. Connection errors and timeouts are retried with jittered backoff
    within the caller's deadline (every operation is idempotent: track by its event id).
    """

    def __init__(
        self,
        url: str,
        ttl_seconds: float = 1800.0,
        limits: SessionLimits = DEFAULT_LIMITS,
        prefix: str = "reco:s:",
        timeout_seconds: float = 0.5,
        attempts: int = 3,
        backoff_seconds: float = 0.02,
    ) -> None:
        self.name = redacted(url)
        self.ttl_ms = int(ttl_seconds * 1000)
        self.limits = limits
        self.prefix = prefix
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.cluster = is_cluster(url)
        # A session's keys share a hash tag, so one slot holds them: the version check and the
        # write stay one script on one node, in a cluster as on a single Redis.
        self.client: Any = redis_client(url, timeout_seconds)
        self._store_if_unchanged = self.client.register_script(_STORE_IF_UNCHANGED)
        self._last_warning = -1.0
        self._failures = 0

    def describe(self) -> str:
        kind = "Redis Cluster" if self.cluster else "Redis"
        return f"{kind} session store {self.name} (shared by every process using it)"

    # -- persistence --------------------------------------------------------------------------

    def persistence(self) -> Persistence:
        """What Redis says about its persistence (read_persistence; every node of a cluster)."""
        return read_persistence(self.client, self.cluster)

    def check_persistence(self, require_durable: bool) -> Persistence:
        """Logs what Redis persistence guarantees; with require_durable, raises
        SessionStoreNotDurable unless every acknowledged event is provably fsynced."""
        found = self.persistence()
        if require_durable and not found.durable:
            raise SessionStoreNotDurable(
                f"--require-durable-sessions: {found.describe()} (store {self.name})"
            )
        if found.durable:
            log.info("%s", found.describe())
        else:
            log.warning("%s", found.describe())
        return found

    # -- sessions ----------------------------------------------------------------------------

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}"

    def track(self, event: Event, deadline: float | None = None) -> Tracked:
        return self._retrying(lambda: self._track_once(event), deadline)

    def _track_once(self, event: Event) -> Tracked:
        key = self._key(event.session_id)
        ids = key + ":ids"
        for _ in range(_MAX_CONFLICTS):
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(key, ("v", "f"))
            pipe.sismember(ids, event.event_id)
            (version, stored), seen = pipe.execute()
            folded = None if stored is None else self._folded(stored, event.session_id)
            if seen and folded is not None:
                return Tracked(folded.state, duplicate=True)
            check_room(folded, event, self.limits)
            folded = absorb(folded, event, self.limits.late_window)
            row = folded.to_row()
            outcome = self._store_if_unchanged(
                keys=(key, ids),
                args=(
                    (version or b"0").decode(),
                    event.event_id,
                    _dumps(row[0]),
                    _dumps(row),
                    self.ttl_ms,
                ),
            )
            if outcome[0] == _STORED:
                return Tracked(folded.state, duplicate=False)
            if outcome[0] == _DUPLICATE:
                return Tracked(self._state(outcome[1], event.session_id), duplicate=True)
        raise SessionStoreUnavailable(
            "the session store is too contended for this session right now; retry the event"
        )

    def get(self, session_id: str, deadline: float | None = None) -> SessionState | None:
        stored = self._retrying(lambda: self.client.hget(self._key(session_id), "s"), deadline)
        return None if stored is None else self._state(stored, session_id)

    def forget(self, session_id: str, deadline: float | None = None) -> bool:
        key = self._key(session_id)
        return bool(self._retrying(lambda: self.client.delete(key, key + ":ids"), deadline))

    @staticmethod
    def _folded(stored: bytes | str, session_id: str) -> Folded:
        return Folded.from_row(json.loads(stored), session_id)

    @staticmethod
    def _state(stored: bytes | str, session_id: str) -> SessionState:
        return SessionState.from_row(json.loads(stored), session_id)

    def _retrying(self, operation: Callable[[], T], deadline: float | None) -> T:
        """Runs an idempotent operation, retrying connection errors and timeouts with jittered
        exponential backoff while another attempt still fits before the deadline."""
        attempt = 1
        while True:
            try:
                return operation()
            except _TRANSIENT as exc:
                delay = self.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                fits = deadline is None or (
                    time.monotonic() + delay + self.timeout_seconds < deadline
                )
                if attempt >= self.attempts or not fits:
                    self._log_failure(f"failed after {attempt} attempt(s)", exc)
                    raise SessionStoreUnavailable(
                        f"the session store is unreachable ({_reason(exc)}); {_RETRY_HINT}"
                    ) from None
                attempt += 1
                time.sleep(delay)
            except redis.RedisError as exc:
                self._log_failure("refused the operation", exc)
                raise SessionStoreUnavailable(
                    f"the session store refused the operation ({_reason(exc)}); {_RETRY_HINT}"
                ) from None

    def _log_failure(self, what: str, exc: BaseException) -> None:
        """A warning at most once a second (an outage fails every request), with a count."""
        self._failures += 1
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            log.warning("session store %s %s: %s (%d failed operations since the last warning)",
                        self.name, what, _scrub(exc), self._failures)  # fmt: skip
            self._last_warning, self._failures = now, 0


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _text_dict(value: Any) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in dict(value).items()
    }


# Failure kinds clients may see, most specific first: never an address, URL or exception class.
_REASONS: tuple[tuple[type[redis.RedisError], str], ...] = (
    (redis.TimeoutError, "timed out"),
    (redis.AuthenticationError, "authentication failed"),
    (redis.BusyLoadingError, "Redis is loading its data"),
    (redis.ConnectionError, "connection failed"),
    (redis.ReadOnlyError, "Redis is read-only"),
    (redis.ResponseError, "Redis returned an error"),
)


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason for clients: the kind of failure, never the address."""
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), "Redis error")


def _scrub(exc: BaseException) -> str:
    """An exception's first line for the operator's log (redis-py never puts the password in
    it; the store is named by its redacted URL beside it)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
