"""Live session state: behaviour events folded, in a deterministic order, into model context."""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reco import N_PREVIOUS, SessionContext, ViewHistory
from server.core.errors import SessionFull

MS_PER_MINUTE = 60_000.0


class EventType(enum.Enum):
    """Behaviour events a tracker sends (mirrors reco.v1.EventType without the prefix)."""

    VIEW = "view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    IMAGE_CLICK = "image_click"
    SCROLL = "scroll"
    RECOMMENDATION_CLICK = "recommendation_click"


# Events that are about one product and must name it.
NEEDS_PRODUCT = {
    EventType.VIEW, EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART,
    EventType.RECOMMENDATION_CLICK,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Event:
    """One behaviour event; timestamp_ms is the client's clock (or the receive time)."""

    event_id: str
    session_id: str
    type: EventType
    timestamp_ms: int
    product_id: str = ""
    customer_id: str = ""
    time_on_page_sec: float | None = None
    scroll_depth: float | None = None
    device_type: str = ""
    traffic_source: str = ""
    # The response a recommendation click (or a purchase after one) came from; the impression
    # log keeps it, the session state does not (so it is not in to_row).
    request_id: str = ""

    def sort_key(self) -> tuple[int, str]:
        """Events apply in client-time order; the id breaks ties the same way everywhere."""
        return (self.timestamp_ms, self.event_id)

    def to_row(self) -> EventRow:
        """The event as a tuple of plain values (its session is known from where it is kept)."""
        return (
            self.timestamp_ms, self.event_id, self.type.value, self.product_id, self.customer_id,
            self.time_on_page_sec, self.scroll_depth, self.device_type, self.traffic_source,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence[Any], session_id: str) -> Event:
        """The inverse of to_row (a JSON list is accepted as well as a tuple)."""
        ts, event_id, kind, product, customer, top, depth, device, traffic = row
        return cls(event_id, session_id, EventType(kind), ts, product, customer, top, depth,
                   device, traffic)  # fmt: skip

    def data_bytes(self) -> int:
        """UTF-8 bytes of the strings this event adds to its session (the byte cap counts them)."""
        total = 0
        for text in (self.event_id, self.product_id, self.customer_id, self.device_type,
                     self.traffic_source):  # fmt: skip
            total += len(text) if text.isascii() else len(text.encode())
        return total


# A stored event: (timestamp_ms, event_id, type, product_id, customer_id, time_on_page_sec,
# scroll_depth, device_type, traffic_source); plain values only, so stores can encode it as is.
EventRow = tuple[int, str, str, str, str, float | None, float | None, str, str]


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one session may hold, and which event times are plausible (docs/architecture.md,
    "Errors").

    max_events and max_bytes are caps: at either one the session refuses further events with
    SessionFull (RESOURCE_EXHAUSTED) until it expires or is forgotten. Ids longer than
    max_id_bytes and timestamps outside [now - max_age, now + max_ahead] are refused as
    InvalidArgument. late_window: how many later events a late one may find ahead of it and still
    be put in its exact place (see Folded).
    """

    max_events: int = 2000
    max_bytes: int = 256 * 1024
    max_id_bytes: int = 128
    max_age_seconds: float = 86_400.0
    max_ahead_seconds: float = 300.0
    late_window: int = 16


DEFAULT_LIMITS = SessionLimits()
# Fields of SessionState.to_row after its 4 leading ones when the history is there (the last).
_HISTORY_AT = 11
_NO_VIEWS = ViewHistory()  # immutable, so every new session can share it


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the model needs to know about a session, derived only from its events."""

    session_id: str
    customer_id: str = ""
    current_product_id: str = ""
    previous_product_ids: tuple[str, ...] = ()  # most recent first, up to N_PREVIOUS
    cart: tuple[str, ...] = ()  # in the order products were added
    products_viewed_count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    page_start_ms: int = 0  # when the current product's view started
    page_seconds: float | None = None  # time on the current page, as last reported
    scroll_depth: float | None = None  # deepest scroll on the current page
    clicked_image: bool = False
    device_type: str = ""
    traffic_source: str = ""
    events_applied: int = 0
    # Every view folded in as it arrives (decayed, at most reco.MAX_HISTORY products): what the
    # sequence feature set reads (docs/architecture.md, "The session context").
    history: ViewHistory = _NO_VIEWS

    @property
    def session_length_mins(self) -> float:
        """Minutes from the first to the last event."""
        return (self.last_ms - self.first_ms) / MS_PER_MINUTE

    @property
    def time_on_page_sec(self) -> float | None:
        """Seconds on the current page: as reported by the client, else from event times."""
        if not self.current_product_id:
            return None
        if self.page_seconds is not None:
            return self.page_seconds
        return (self.last_ms - self.page_start_ms) / 1000.0

    def to_context(self) -> SessionContext:
        """The session as the model's context (the current product's category and price are the
        catalog's; docs/architecture.md, "The session context")."""
        return SessionContext(
            session_id=self.session_id,
            customer_id=self.customer_id,
            current_product_id=self.current_product_id,
            previous_product_ids=self.previous_product_ids,
            products_in_cart=len(self.cart),
            device_type=self.device_type or None,
            traffic_source=self.traffic_source or None,
            time_on_page_sec=self.time_on_page_sec,
            scroll_depth=self.scroll_depth if self.current_product_id else None,
            clicked_product_image=self.clicked_image if self.current_product_id else None,
            session_length_mins=self.session_length_mins,
            products_viewed_count=self.products_viewed_count,
            cart_product_ids=self.cart,
            view_history=self.history,
        )

    def to_row(self) -> tuple[Any, ...]:
        """The state as a tuple of plain values, without the session id (fields in order)."""
        return (
            self.customer_id, self.current_product_id, self.previous_product_ids, self.cart,
            self.products_viewed_count, self.first_ms, self.last_ms, self.page_start_ms,
            self.page_seconds, self.scroll_depth, self.clicked_image, self.device_type,
            self.traffic_source, self.events_applied, self.history.to_row(),
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence[Any], session_id: str) -> SessionState:
        """The inverse of to_row (JSON lists are accepted for the id tuples). A row stored
        before states held the history reads with an empty one."""
        customer, current, previous, cart, *rest = row
        if len(rest) == _HISTORY_AT:
            rest[-1] = ViewHistory.from_row(rest[-1])
        return cls(session_id, customer, current, tuple(previous), tuple(cart), *rest)


def apply(state: SessionState | None, event: Event) -> SessionState:
    """The state after one more event (events must arrive here in sort_key order).

    Builds the new state in one constructor call (every event of every session passes here)."""
    ts = event.timestamp_ms
    s = state or SessionState(session_id=event.session_id, first_ms=ts, last_ms=ts)
    current, previous, cart = s.current_product_id, s.previous_product_ids, s.cart
    viewed, page_start, history = s.products_viewed_count, s.page_start_ms, s.history
    page_seconds, depth, clicked = s.page_seconds, s.scroll_depth, s.clicked_image
    kind = event.type
    if kind is EventType.VIEW:
        if current:
            previous = (current, *previous)[:N_PREVIOUS]
        current, viewed, page_start = event.product_id, viewed + 1, ts
        history = history.after_view(event.product_id)
        page_seconds, depth, clicked = event.time_on_page_sec, event.scroll_depth, False
    else:
        if kind is EventType.ADD_TO_CART:
            if event.product_id not in cart:
                cart = (*cart, event.product_id)
        elif kind is EventType.REMOVE_FROM_CART:
            cart = tuple(p for p in cart if p != event.product_id)
        elif kind is EventType.PURCHASE:
            # A purchase naming a product buys that product; one naming none checks out the cart.
            cart = tuple(p for p in cart if event.product_id and p != event.product_id)
        if ts >= page_start:
            # Engagement on the current page: latest time reported, deepest scroll, image click.
            if event.time_on_page_sec is not None:
                page_seconds = event.time_on_page_sec
            if event.scroll_depth is not None:
                depth = max(depth or 0.0, event.scroll_depth)
            if kind is EventType.IMAGE_CLICK:
                clicked = True
    return SessionState(
        s.session_id,
        event.customer_id or s.customer_id,
        current,
        previous,
        cart,
        viewed,
        min(s.first_ms, ts),
        max(s.last_ms, ts),
        page_start,
        page_seconds,
        depth,
        clicked,
        # Device and traffic source describe how the session started: the first one sticks.
        s.device_type or event.device_type,
        s.traffic_source or event.traffic_source,
        s.events_applied + 1,
        history,
    )


def fold(events: Iterable[Event], base: SessionState | None = None) -> SessionState | None:
    """The state of a session from its events, in deterministic (timestamp, event id) order."""
    state = base
    for event in sorted(events, key=Event.sort_key):
        state = apply(state, event)
    return state


@dataclass(frozen=True, slots=True)
class Folded:
    """A session as stores keep it: O(1) to read and to extend, whatever its number of events.

    `tail` holds the rows (Event.to_row) of the most recent events, between `late_window` and
    2 x late_window - 1 of them, in (timestamp, event id) order; `base` is the row of the fold
    of every older event; `state` = fold(tail, base). An event that arrives late, but with at
    most late_window later events ahead of it, is inserted in order and the tail re-folded, so
    the state is exactly fold(all events in order); a later one is folded into the base as it
    arrives (as if just before the retained events). `mark` is the state after the first
    late_window rows of the tail (None when a late event invalidated it): when the tail is
    full, those rows move into the base by taking the mark, so an in-order event costs one
    apply(), whatever the session's length.
    """

    state: SessionState
    tail: tuple[EventRow, ...]
    base: tuple[Any, ...] | None  # SessionState.to_row() of the events older than the tail
    mark: tuple[Any, ...] | None  # SessionState.to_row() after tail[:late_window]
    data_bytes: int  # event bytes accepted so far (SessionLimits.max_bytes)

    def to_row(self) -> tuple[Any, ...]:
        """Plain values only (tuples, strings, numbers, None), for the stores' encodings."""
        return (self.state.to_row(), self.tail, self.base, self.mark, self.data_bytes)

    @classmethod
    def from_row(cls, row: Sequence[Any], session_id: str) -> Folded:
        """The inverse of to_row (JSON lists are accepted for tuples)."""
        state, tail, base, mark, data_bytes = row
        if type(tail) is not tuple:  # from JSON
            tail = tuple(tuple(r) for r in tail)
            base = None if base is None else tuple(base)
            mark = None if mark is None else tuple(mark)
        return cls(SessionState.from_row(state, session_id), tail, base, mark, data_bytes)


def check_room(folded: Folded | None, event: Event, limits: SessionLimits) -> None:
    """Raises SessionFull if the session cannot take one more event."""
    if folded is None:
        return
    held = folded.state.events_applied
    if held >= limits.max_events:
        raise SessionFull(event.session_id, held, limits.max_events, "events",
                          "--max-session-events")  # fmt: skip
    if folded.data_bytes + event.data_bytes() > limits.max_bytes:
        raise SessionFull(event.session_id, folded.data_bytes, limits.max_bytes,
                          "bytes of event data", "--max-session-bytes")  # fmt: skip


def absorb(folded: Folded | None, event: Event, late_window: int) -> Folded:
    """The session after one more (new, not duplicate) event; see Folded for the order rule.

    Both stores call this, so the same events in the same arrival order give the same state."""
    sid = event.session_id
    row = event.to_row()
    tail: tuple[EventRow, ...]
    base: tuple[Any, ...] | None
    mark: tuple[Any, ...] | None
    if folded is None:
        state, tail, base, mark, held = apply(None, event), (row,), None, None, 0
    else:
        tail, base, mark, held = folded.tail, folded.base, folded.mark, folded.data_bytes
        key = (event.timestamp_ms, event.event_id)
        last = tail[-1]
        if key > (last[0], last[1]):
            state = apply(folded.state, event)  # in order: the common case, no re-fold
            tail = (*tail, row)
        else:
            first = tail[0]
            if base is None or key > (first[0], first[1]):
                at = bisect.bisect([(r[0], r[1]) for r in tail], key)
                tail = (*tail[:at], row, *tail[at:])
                if at < late_window:
                    mark = None
            else:  # older than every retained event: into the base, in arrival order
                base = apply(_state(base, sid), event).to_row()
                mark = None
            state = _refold(tail, _state(base, sid), sid)
    if len(tail) == late_window:
        mark = state.to_row()
    elif len(tail) >= 2 * late_window:
        older, tail = tail[:late_window], tail[late_window:]
        base = mark if mark is not None else _refold(older, _state(base, sid), sid).to_row()
        mark = state.to_row()  # the tail now holds exactly late_window rows
    return Folded(state, tail, base, mark, held + event.data_bytes())


def _state(row: Sequence[Any] | None, session_id: str) -> SessionState | None:
    return None if row is None else SessionState.from_row(row, session_id)


def _refold(tail: Sequence[EventRow], base: SessionState | None, sid: str) -> SessionState:
    state = base
    for row in tail:  # already in order
        state = apply(state, Event.from_row(row, sid))
    assert state is not None  # the tail is never empty here
    return state


@dataclass(frozen=True, slots=True)
class Tracked:
    """The answer to one tracked event: the session after it, and whether it was a repeat."""

    state: SessionState
    duplicate: bool


class SessionStore(Protocol):
    """Where sessions live. Implementations: MemoryStore (one process, lost when it exits) and
    RedisStore (shared by processes and replicas; durable as far as Redis persistence is).
    An acknowledged event (track returned) is stored. `deadline` is a time.monotonic() instant
    that bounds retries; None = the store's own bound."""

    limits: SessionLimits

    def track(self, event: Event, deadline: float | None = None) -> Tracked:
        """Stores an event once (by event_id) and returns the session state after it; raises
        SessionFull at the session's caps."""
        ...

    def get(self, session_id: str, deadline: float | None = None) -> SessionState | None:
        """The session's state, or None for an unknown (or expired) session."""
        ...

    def forget(self, session_id: str, deadline: float | None = None) -> bool:
        """Deletes the session; True if it existed."""
        ...

    def describe(self) -> str:
        """One line for the start-up log: what the store is and how durable (no secrets)."""
        ...
