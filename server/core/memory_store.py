"""The in-process session store: bounded, thread-safe, invisible to the garbage collector.

It lives and dies with the process: every session is lost when the server stops or restarts.
"""

from __future__ import annotations

import marshal
import threading
import time
from collections.abc import Callable
from itertools import islice

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

# Event ids of a session are kept in one string, each id followed by this separator (ids with
# control characters are refused by validate_event), so a lookup is one substring search.
_SEP = "\x1f"
# Sessions per shard before the shard count grows; small shards keep every dict operation
# (resize, eviction scan) in microseconds. A store for fewer sessions has one exact LRU.
_SESSIONS_PER_SHARD = 512
_MAX_SHARDS = 256
# Expired sessions dropped from the front of a shard per tracked event (amortised cleanup).
_EXPIRE_PER_TRACK = 2


class _Shard:
    """Sessions in tracking order (least recently tracked first): plain dicts of strings and
    bytes, which CPython's collector never tracks, so holding a million events adds nothing to
    a garbage-collection pause."""

    __slots__ = ("event_ids", "records")

    def __init__(self) -> None:
        # session id -> marshal.dumps((touched, state row, marshal.dumps(Folded row)))
        self.records: dict[str, bytes] = {}
        self.event_ids: dict[str, str] = {}  # session id -> "\x1fid1\x1fid2\x1f..."


class MemoryStore:
    """Sessions in this process, least recently tracked evicted first (per shard of about 512
    sessions), idle ones expired after the TTL. Each session is one bytes record (its folded
    state, see sessions.Folded) plus one string of its event ids: reads decode the state alone,
    O(1) in the number of events; a track decodes and re-encodes the bounded tail.
    """

    def __init__(
        self,
        max_sessions: int = 100_000,
        ttl_seconds: float = 1800.0,
        limits: SessionLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl_seconds = ttl_seconds
        self.limits = limits
        self._clock = clock
        count = max(1, min(_MAX_SHARDS, max_sessions // _SESSIONS_PER_SHARD))
        self._shards = tuple(_Shard() for _ in range(count))
        self._per_shard = -(-max_sessions // count)  # ceiling
        self._lock = threading.Lock()

    def describe(self) -> str:
        return (
            f"in-process session store (up to {self.max_sessions} sessions, idle TTL "
            f"{self.ttl_seconds:g} s): sessions live in this process only and are LOST when it "
            "stops or restarts; use --session-store redis://... for durable, shared sessions"
        )

    def track(self, event: Event, deadline: float | None = None) -> Tracked:
        del deadline  # nothing here waits
        sid = event.session_id
        now = self._clock()
        with self._lock:
            shard = self._shard(sid)
            folded = self._folded(shard, sid, now)
            ids = shard.event_ids.get(sid, _SEP) if folded is not None else _SEP
            if folded is not None and (_SEP + event.event_id + _SEP) in ids:
                self._store(shard, sid, now, folded, ids)  # a duplicate still refreshes the TTL
                return Tracked(folded.state, duplicate=True)
            check_room(folded, event, self.limits)
            folded = absorb(folded, event, self.limits.tail_events)
            self._store(shard, sid, now, folded, ids + event.event_id + _SEP)
            self._expire_front(shard, now)
            while len(shard.records) > self._per_shard:
                self._drop(shard, next(iter(shard.records)))
            return Tracked(folded.state, duplicate=False)

    def get(self, session_id: str, deadline: float | None = None) -> SessionState | None:
        del deadline
        with self._lock:
            shard = self._shard(session_id)
            record = shard.records.get(session_id)
            if record is None:
                return None
            touched, state, _ = marshal.loads(record)
            if self._clock() - touched > self.ttl_seconds:
                self._drop(shard, session_id)
                return None
            return SessionState.from_row(state, session_id)

    def forget(self, session_id: str, deadline: float | None = None) -> bool:
        del deadline
        with self._lock:
            shard = self._shard(session_id)
            existed = session_id in shard.records
            self._drop(shard, session_id)
            return existed

    def __len__(self) -> int:
        return sum(len(shard.records) for shard in self._shards)

    def _shard(self, session_id: str) -> _Shard:
        return self._shards[hash(session_id) % len(self._shards)]

    def _folded(self, shard: _Shard, session_id: str, now: float) -> Folded | None:
        record = shard.records.get(session_id)
        if record is None:
            return None
        touched, _, folded = marshal.loads(record)
        if now - touched > self.ttl_seconds:
            self._drop(shard, session_id)
            return None
        return Folded.from_row(marshal.loads(folded), session_id)

    def _store(self, shard: _Shard, sid: str, now: float, folded: Folded, ids: str) -> None:
        row = folded.to_row()
        # Re-inserting moves the session to the end: dicts keep insertion order, so the front
        # of a shard is its least recently tracked session.
        shard.records.pop(sid, None)
        shard.records[sid] = marshal.dumps((now, row[0], marshal.dumps(row)))
        shard.event_ids[sid] = ids

    def _expire_front(self, shard: _Shard, now: float) -> None:
        for sid in list(islice(shard.records, _EXPIRE_PER_TRACK)):
            touched = marshal.loads(shard.records[sid])[0]
            if now - touched <= self.ttl_seconds:
                return
            self._drop(shard, sid)

    @staticmethod
    def _drop(shard: _Shard, session_id: str) -> None:
        shard.records.pop(session_id, None)
        shard.event_ids.pop(session_id, None)
