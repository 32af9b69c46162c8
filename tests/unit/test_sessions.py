"""Session folding and the in-process store: order-independence, duplicates, TTL, LRU."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.errors import InvalidArgument
from server.core.memory_store import MemoryStore
from server.core.sessions import (
    Event,
    EventType,
    SessionLimits,
    SessionState,
    fold,
    validate_event,
)

T0 = 1_700_000_000_000


def ev(i: int, kind: EventType, product: str = "", at_s: float = 0.0, **kw: object) -> Event:
    return Event(
        event_id=f"e{i}",
        session_id="s1",
        type=kind,
        timestamp_ms=T0 + int(at_s * 1000),
        product_id=product,
        **kw,  # type: ignore[arg-type]
    )


CAMPING_STORY = [
    ev(
        1,
        EventType.VIEW,
        "BOOTS",
        0,
        device_type="Desktop",
        traffic_source="Direct",
        customer_id="c9",
    ),
    ev(2, EventType.SCROLL, at_s=40, scroll_depth=0.8, time_on_page_sec=40.0),
    ev(3, EventType.VIEW, "TENT", 60),
    ev(4, EventType.ADD_TO_CART, "TENT", 90),
    ev(5, EventType.VIEW, "BAG", 120, device_type="Mobile"),
    ev(6, EventType.IMAGE_CLICK, "BAG", 150),
    ev(7, EventType.SCROLL, at_s=180, scroll_depth=0.5),
    ev(8, EventType.SCROLL, at_s=190, scroll_depth=0.3, time_on_page_sec=70.0),
]


def test_the_camping_story_state() -> None:
    state = fold(CAMPING_STORY)
    assert state is not None
    assert state.current_product_id == "BAG"
    assert state.previous_product_ids == ("TENT", "BOOTS")
    assert state.cart == ("TENT",)
    assert state.products_viewed_count == 3
    assert state.session_length_mins == pytest.approx(190 / 60)
    assert state.time_on_page_sec == 70.0  # last reported on this page
    assert state.scroll_depth == 0.5  # deepest on this page, not the 0.8 of the first page
    assert state.clicked_image is True
    assert (state.device_type, state.traffic_source, state.customer_id) == (
        "Desktop",
        "Direct",
        "c9",
    )
    context = state.to_context()
    assert context.products_in_cart == 1 and context.clicked_product_image is True


def test_a_new_view_resets_page_engagement_and_keeps_three_previous() -> None:
    events = [ev(i, EventType.VIEW, f"P{i}", i * 10) for i in range(6)]
    events.append(ev(10, EventType.IMAGE_CLICK, "P5", 55))
    events.append(ev(11, EventType.VIEW, "P6", 60))
    state = fold(events)
    assert state is not None
    assert state.previous_product_ids == ("P5", "P4", "P3")
    assert state.clicked_image is False and state.scroll_depth is None
    assert state.time_on_page_sec == 0.0  # no time reported yet: from event times


def test_cart_remove_and_purchase() -> None:
    events = [
        ev(1, EventType.ADD_TO_CART, "A", 1), ev(2, EventType.ADD_TO_CART, "B", 2),
        ev(3, EventType.ADD_TO_CART, "A", 3), ev(4, EventType.REMOVE_FROM_CART, "B", 4),
        ev(5, EventType.ADD_TO_CART, "C", 5), ev(6, EventType.PURCHASE, "A", 6),
    ]  # fmt: skip
    state = fold(events)
    assert state is not None and state.cart == ("C",)
    checkout = fold([*events, ev(7, EventType.PURCHASE, "", 7)])
    assert checkout is not None and checkout.cart == ()


@settings(max_examples=200, deadline=None)
@given(st.permutations(CAMPING_STORY))
def test_any_arrival_order_gives_the_same_state(events: list[Event]) -> None:
    store = MemoryStore()
    for event in events:
        store.track(event)
    assert store.get("s1") == fold(CAMPING_STORY)


def test_duplicates_are_acknowledged_once() -> None:
    store = MemoryStore()
    first = store.track(CAMPING_STORY[0])
    again = store.track(CAMPING_STORY[0])
    assert not first.duplicate and again.duplicate
    assert again.state == first.state and again.state.events_applied == 1


def test_compaction_keeps_the_state_of_in_order_events() -> None:
    events = [
        ev(i, EventType.VIEW if i % 3 else EventType.ADD_TO_CART, f"P{i % 7}", i) for i in range(50)
    ]
    store = MemoryStore(limits=SessionLimits(tail_events=8))
    for event in events:
        store.track(event)
    assert store.get("s1") == fold(events)


def test_ttl_expiry_lru_eviction_and_forget() -> None:
    now = [0.0]
    store = MemoryStore(max_sessions=2, ttl_seconds=10, clock=lambda: now[0])
    for sid in ("a", "b"):
        store.track(Event("x", sid, EventType.VIEW, T0, "P"))
    now[0] = 5.0
    store.get("a")  # reading does not refresh; tracking does
    store.track(Event("y", "a", EventType.SCROLL, T0 + 1, scroll_depth=0.1))
    store.track(Event("x", "c", EventType.VIEW, T0, "P"))  # evicts b, the least recently used
    assert store.get("b") is None and store.get("a") is not None
    now[0] = 16.0
    assert store.get("a") is None  # idle for 11 s > 10 s TTL
    assert store.forget("c") is True and store.forget("c") is False and len(store) == 0


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (Event("", "s", EventType.VIEW, T0, "P"), r"event\.event_id must not be empty"),
        (Event("e", "", EventType.VIEW, T0, "P"), r"event\.session_id must not be empty"),
        (Event("e", "s", EventType.ADD_TO_CART, T0), r"event\.product_id must name a product"),
        (Event("e", "s", EventType.SCROLL, T0, scroll_depth=1.2), r"event\.scroll_depth must be between 0 and 1, got 1\.2"),
        (Event("e", "s", EventType.SCROLL, T0, time_on_page_sec=-1.0), r"event\.time_on_page_sec"),
    ],
)  # fmt: skip
def test_bad_events_name_the_field(event: Event, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_event(event)


def test_event_row_round_trip() -> None:
    for event in CAMPING_STORY:
        assert Event.from_row(event.to_row(), event.session_id) == event


def test_unknown_session_context_is_empty() -> None:
    context = SessionState(session_id="s").to_context()
    assert context.current_product_id == "" and context.scroll_depth is None
