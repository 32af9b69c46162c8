"""The in-process session store: thread-safe, bounded by an LRU and a session TTL."""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from server.core.sessions import Event, SessionState, Tracked, apply, fold


@dataclass(slots=True)
class _Session:
    events: list[Event]  # sorted by Event.sort_key
    keys: list[tuple[int, str]]  # the sort keys of `events`, for bisect
    event_ids: set[str]
    state: SessionState
    touched: float
    base: SessionState | None = None  # events folded away by compaction
    base_until: tuple[int, str] = field(default=(-1, ""))


class MemoryStore:
    """Sessions in a dict, least recently used evicted first, idle ones expired after the TTL.

    The folded state is cached and updated incrementally for in-order events; an out-of-order
    event triggers a re-fold, so the state is always fold(events in timestamp order).
    """

    def __init__(
        self,
        max_sessions: int = 100_000,
        ttl_seconds: float = 1800.0,
        max_events: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl_seconds = ttl_seconds
        self.max_events = max_events
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def track(self, event: Event) -> Tracked:
        now = self._clock()
        with self._lock:
            session = self._live(event.session_id, now)
            if session is None:
                state = apply(None, event)
                self._sessions[event.session_id] = _Session(
                    [event], [event.sort_key()], {event.event_id}, state, now
                )
                self._evict()
                return Tracked(state, duplicate=False)
            session.touched = now
            self._sessions.move_to_end(event.session_id)
            if event.event_id in session.event_ids:
                return Tracked(session.state, duplicate=True)
            session.event_ids.add(event.event_id)
            key = event.sort_key()
            if key < session.base_until:
                # Older than what compaction folded away: applied in arrival order instead.
                session.state = apply(session.state, event)
                session.base = apply(session.base, event)
                return Tracked(session.state, duplicate=False)
            position = bisect.bisect(session.keys, key)
            session.events.insert(position, event)
            session.keys.insert(position, key)
            if position == len(session.events) - 1:
                session.state = apply(session.state, event)
            else:
                session.state = fold(session.events, session.base)  # type: ignore[assignment]
            if len(session.events) > self.max_events:
                self._compact(session)
            return Tracked(session.state, duplicate=False)

    def get(self, session_id: str) -> SessionState | None:
        with self._lock:
            session = self._live(session_id, self._clock())
            return None if session is None else session.state

    def forget(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._sessions)

    def _live(self, session_id: str, now: float) -> _Session | None:
        session = self._sessions.get(session_id)
        if session is not None and now - session.touched > self.ttl_seconds:
            del self._sessions[session_id]
            return None
        return session

    def _evict(self) -> None:
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def _compact(self, session: _Session) -> None:
        """Folds the older half of a long session's events into its base state."""
        half = len(session.events) // 2
        session.base = fold(session.events[:half], session.base)
        session.base_until = session.keys[half - 1]
        del session.events[:half]
        del session.keys[:half]
