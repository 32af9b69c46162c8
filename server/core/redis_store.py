"""The Redis session store: events in one hash per session, shared by processes and replicas."""

from __future__ import annotations

import logging

import redis

from server.core.errors import Unavailable
from server.core.sessions import Event, SessionState, Tracked, fold

log = logging.getLogger(__name__)


class SessionStoreUnavailable(Unavailable):
    """The session store cannot be reached; nothing was stored."""


class RedisStore:
    """Each session is a hash event_id -> event JSON with a TTL refreshed on every event.

    HSETNX makes a repeated event id a no-op, and storing, refreshing the TTL and reading the
    session back happen in one MULTI/EXEC round trip, so concurrent trackers on several
    processes never lose or double-apply an event. The state is the fold of the stored events,
    in the same deterministic order as the in-process store.
    """

    def __init__(self, url: str, ttl_seconds: float = 1800.0, prefix: str = "reco:session:",
                 timeout_seconds: float = 0.5) -> None:  # fmt: skip
        self.url = url
        self.ttl_ms = int(ttl_seconds * 1000)
        self.prefix = prefix
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            health_check_interval=30,
        )

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}{session_id}"

    def track(self, event: Event) -> Tracked:
        key = self._key(event.session_id)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.hsetnx(key, event.event_id, event.to_json())
            pipe.pexpire(key, self.ttl_ms)
            pipe.hvals(key)
            added, _, stored = pipe.execute()
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(
                f"session store {self.url} is unreachable: {exc}"
            ) from exc
        state = fold(Event.from_json(v) for v in stored)
        assert state is not None  # the hash holds at least this event
        return Tracked(state, duplicate=not added)

    def get(self, session_id: str) -> SessionState | None:
        try:
            stored = self.client.hvals(self._key(session_id))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(
                f"session store {self.url} is unreachable: {exc}"
            ) from exc
        return fold(Event.from_json(v) for v in stored) if stored else None

    def forget(self, session_id: str) -> bool:
        try:
            return bool(self.client.delete(self._key(session_id)))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(
                f"session store {self.url} is unreachable: {exc}"
            ) from exc
