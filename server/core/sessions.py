"""Live session state: behaviour events folded, in a deterministic order, into model context."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from server.core.errors import InvalidArgument
from server.core.requests import Context
from server.core.validation import non_negative, unit_interval
from training.features import N_PREVIOUS

MS_PER_MINUTE = 60_000.0


class EventType(enum.Enum):
    """Behaviour events a tracker sends (mirrors reco.v1.EventType without the prefix)."""

    VIEW = "view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    IMAGE_CLICK = "image_click"
    SCROLL = "scroll"


# Events that are about one product and must name it.
NEEDS_PRODUCT = {EventType.VIEW, EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART}


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

    def sort_key(self) -> tuple[int, str]:
        """Events apply in client-time order; the id breaks ties the same way everywhere."""
        return (self.timestamp_ms, self.event_id)

    def to_json(self) -> str:
        """Compact JSON for stores that keep events outside this process."""
        payload = {
            "i": self.event_id, "s": self.session_id, "t": self.type.value, "ts": self.timestamp_ms,
            "p": self.product_id, "c": self.customer_id, "top": self.time_on_page_sec,
            "sd": self.scroll_depth, "d": self.device_type, "tr": self.traffic_source,
        }  # fmt: skip
        return json.dumps(payload, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """The inverse of to_json."""
        d: dict[str, Any] = json.loads(text)
        return cls(
            event_id=d["i"], session_id=d["s"], type=EventType(d["t"]), timestamp_ms=d["ts"],
            product_id=d["p"], customer_id=d["c"], time_on_page_sec=d["top"],
            scroll_depth=d["sd"], device_type=d["d"], traffic_source=d["tr"],
        )  # fmt: skip


def validate_event(event: Event, prefix: str = "event") -> None:
    """Raises InvalidArgument naming the first malformed field of an event."""
    if not event.event_id:
        raise InvalidArgument(f"{prefix}.event_id", event.event_id, "must not be empty")
    if not event.session_id:
        raise InvalidArgument(f"{prefix}.session_id", event.session_id, "must not be empty")
    if event.type in NEEDS_PRODUCT and not event.product_id:
        raise InvalidArgument(
            f"{prefix}.product_id",
            event.product_id,
            f"must name a product for a {event.type.name} event",
        )
    if event.timestamp_ms < 0:
        raise InvalidArgument(
            f"{prefix}.client_timestamp", event.timestamp_ms, "must not be before 1970"
        )
    unit_interval(f"{prefix}.scroll_depth", event.scroll_depth)
    non_negative(f"{prefix}.time_on_page_sec", event.time_on_page_sec)


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

    def to_context(self) -> Context:
        """The session as the feature builder's context (category and price from the catalog)."""
        return Context(
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
        )


def apply(state: SessionState | None, event: Event) -> SessionState:
    """The state after one more event (events must arrive here in sort_key order)."""
    s = state or SessionState(
        session_id=event.session_id, first_ms=event.timestamp_ms, last_ms=event.timestamp_ms
    )
    changes: dict[str, Any] = {
        "last_ms": max(s.last_ms, event.timestamp_ms),
        "first_ms": min(s.first_ms, event.timestamp_ms),
        "events_applied": s.events_applied + 1,
        "customer_id": event.customer_id or s.customer_id,
        # Device and traffic source describe how the session started: the first one sticks.
        "device_type": s.device_type or event.device_type,
        "traffic_source": s.traffic_source or event.traffic_source,
    }
    kind = event.type
    if kind is EventType.VIEW:
        previous = s.previous_product_ids
        if s.current_product_id:
            previous = (s.current_product_id, *previous)[:N_PREVIOUS]
        changes |= {
            "current_product_id": event.product_id,
            "previous_product_ids": previous,
            "products_viewed_count": s.products_viewed_count + 1,
            "page_start_ms": event.timestamp_ms,
            "page_seconds": event.time_on_page_sec,
            "scroll_depth": event.scroll_depth,
            "clicked_image": False,
        }
    elif kind is EventType.ADD_TO_CART:
        if event.product_id not in s.cart:
            changes["cart"] = (*s.cart, event.product_id)
    elif kind is EventType.REMOVE_FROM_CART:
        changes["cart"] = tuple(p for p in s.cart if p != event.product_id)
    elif kind is EventType.PURCHASE:
        # A purchase naming a product buys that product; one naming none checks out the cart.
        changes["cart"] = tuple(p for p in s.cart if event.product_id and p != event.product_id)
    if kind is not EventType.VIEW and event.timestamp_ms >= s.page_start_ms:
        # Engagement on the current page: latest time reported, deepest scroll, any image click.
        if event.time_on_page_sec is not None:
            changes["page_seconds"] = event.time_on_page_sec
        if event.scroll_depth is not None:
            changes["scroll_depth"] = max(s.scroll_depth or 0.0, event.scroll_depth)
        if kind is EventType.IMAGE_CLICK:
            changes["clicked_image"] = True
    return replace(s, **changes)


def fold(events: Iterable[Event], base: SessionState | None = None) -> SessionState | None:
    """The state of a session from its events, in deterministic (timestamp, event id) order."""
    state = base
    for event in sorted(events, key=Event.sort_key):
        state = apply(state, event)
    return state


@dataclass(frozen=True, slots=True)
class Tracked:
    """The answer to one tracked event: the session after it, and whether it was a repeat."""

    state: SessionState
    duplicate: bool


class SessionStore(Protocol):
    """Where session events live. Implementations: MemoryStore (one process) and RedisStore
    (shared by processes and replicas). An acknowledged event (track returned) is stored."""

    def track(self, event: Event) -> Tracked:
        """Stores an event once (by event_id) and returns the session state after it."""
        ...

    def get(self, session_id: str) -> SessionState | None:
        """The session's state, or None for an unknown (or expired) session."""
        ...

    def forget(self, session_id: str) -> bool:
        """Deletes the session; True if it existed."""
        ...
