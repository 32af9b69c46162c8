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

# Joins a session id and an event id into one dedup key, and a session's event ids into one
# string (ids with control characters are refused by validate_event, so keys are unambiguous).
_SEP = "\x1f"
# Sessions per shard before the shard count grows; small shards keep every dict operation
# (resize, eviction scan) in microseconds. A store for fewer sessions has one exact LRU.
_SESSIONS_PER_SHARD = 512
_MAX_SHARDS = 256
# Expired sessions dropped from the front of a shard per tracked event (amortised cleanup).
_EXPIRE_PER_TRACK = 2


class _Shard:
    """Sessions in tracking order (least recently tracked first): plain dicts of floats, bytes
    and strings, which CPython's collector never tracks, so holding a million events adds
    nothing to a garbage-collection pause."""

    __slots__ = ("event_ids", "folds", "seen", "states", "touched")

    def __init__(self) -> None:
        self.touched: dict[str, float] = {}  # session id -> clock() of its last event
        self.states: dict[str, bytes] = {}  # -> marshal.dumps(SessionState row)
        self.folds: dict[str, bytes] = {}  # -> marshal.dumps(Folded row without the state)
        self.event_ids: dict[str, str] = {}  # -> "id1\x1fid2\x1f...", to forget them
        self.seen: dict[str, None] = {}  # "<session id>\x1f<event id>" of every stored event


class MemoryStore:
    """Sessions in this process, least recently tracked evicted first (per shard of about 512
    sessions), idle ones expired after the TTL. A session is its state and its folded tail (see
    sessions.Folded) as two marshal'd bytes, plus its event ids (one dedup key each, and one
    string to forget them by): a read decodes the state alone, O(1) in the number of events; a
    track decodes and re-encodes the bounded tail.
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
            key = sid + _SEP + event.event_id
            if folded is not None and key in shard.seen:
                self._touch(shard, sid, now)  # a duplicate still refreshes the TTL
                return Tracked(folded.state, duplicate=True)
            check_room(folded, event, self.limits)
            folded = absorb(folded, event, self.limits.late_window)
            self._touch(shard, sid, now)
            state, *rest = folded.to_row()
            shard.states[sid] = marshal.dumps(state)
            shard.folds[sid] = marshal.dumps(tuple(rest))
            shard.event_ids[sid] = shard.event_ids.get(sid, "") + event.event_id + _SEP
            shard.seen[key] = None
            self._expire_front(shard, now)
            while len(shard.touched) > self._per_shard:
                self._drop(shard, next(iter(shard.touched)))
            return Tracked(folded.state, duplicate=False)

    def get(self, session_id: str, deadline: float | None = None) -> SessionState | None:
        del deadline
        with self._lock:
            shard = self._shard(session_id)
            if not self._live(shard, session_id, self._clock()):
                return None
            return SessionState.from_row(marshal.loads(shard.states[session_id]), session_id)

    def forget(self, session_id: str, deadline: float | None = None) -> bool:
        del deadline
        with self._lock:
            shard = self._shard(session_id)
            existed = session_id in shard.touched
            self._drop(shard, session_id)
            return existed

    def __len__(self) -> int:
        return sum(len(shard.touched) for shard in self._shards)

    def _shard(self, session_id: str) -> _Shard:
        return self._shards[hash(session_id) % len(self._shards)]

    def _live(self, shard: _Shard, session_id: str, now: float) -> bool:
        touched = shard.touched.get(session_id)
        if touched is None:
            return False
        if now - touched > self.ttl_seconds:
            self._drop(shard, session_id)
            return False
        return True

    def _folded(self, shard: _Shard, session_id: str, now: float) -> Folded | None:
        if not self._live(shard, session_id, now):
            return None
        state = marshal.loads(shard.states[session_id])
        return Folded.from_row((state, *marshal.loads(shard.folds[session_id])), session_id)

    @staticmethod
    def _touch(shard: _Shard, session_id: str, now: float) -> None:
        # Re-inserting moves the session to the end: dicts keep insertion order, so the front
        # of a shard is its least recently tracked session.
        shard.touched.pop(session_id, None)
        shard.touched[session_id] = now

    def _expire_front(self, shard: _Shard, now: float) -> None:
        for sid in list(islice(shard.touched, _EXPIRE_PER_TRACK)):
            if now - shard.touched[sid] <= self.ttl_seconds:
                return
            self._drop(shard, sid)

    @staticmethod
    def _drop(shard: _Shard, session_id: str) -> None:
        shard.touched.pop(session_id, None)
        shard.states.pop(session_id, None)
        shard.folds.pop(session_id, None)
        for event_id in shard.event_ids.pop(session_id, "").split(_SEP)[:-1]:
            del shard.seen[session_id + _SEP + event_id]
