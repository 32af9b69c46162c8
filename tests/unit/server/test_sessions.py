"""Session folding and the in-process store: order-independence, duplicates, TTL, LRU."""

from __future__ import annotations

import gc
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reco import ViewHistory
from server.core.errors import InvalidArgument
from server.core.memory_store import MemoryStore
from server.core.sessions import (
    Event,
    EventType,
    Folded,
    SessionFull,
    SessionLimits,
    SessionState,
    absorb,
    apply,
    fold,
)
from server.core.validation import validate_event

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
    store = MemoryStore(limits=SessionLimits(late_window=8))
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


# -- Folded state: order rule, caps, limits -------------------------------------------------------

LIMITS = SessionLimits(late_window=8)


def shuffled_within(events: list[Event], lateness: list[int]) -> list[Event]:
    """The events in an arrival order where event i arrives after at most lateness[i] events
    that happened after it (each moves back by a bounded number of places)."""
    order = sorted(range(len(events)), key=lambda i: i + lateness[i] + 0.5)
    return [events[i] for i in order]


story_events = st.lists(
    st.tuples(st.sampled_from(list(EventType)), st.integers(0, 9), st.integers(0, 600)),
    min_size=1,
    max_size=60,
).map(
    lambda specs: [
        ev(i, kind, f"P{p}", at, scroll_depth=0.5 if kind is EventType.SCROLL else None)
        for i, (kind, p, at) in enumerate(specs)
    ]
)


@settings(max_examples=200, deadline=None)
@given(story_events, st.lists(st.integers(0, 8), min_size=60, max_size=60))
def test_late_events_within_the_tail_give_exactly_the_ordered_fold(
    events: list[Event], lateness: list[int]
) -> None:
    ordered = sorted(events, key=Event.sort_key)
    store = MemoryStore(limits=LIMITS)
    folded = None
    for event in shuffled_within(ordered, lateness):
        store.track(event)
        folded = absorb(folded, event, LIMITS.late_window)
    assert store.get("s1") == fold(events) == (folded.state if folded else None)
    assert folded is not None and len(folded.tail) < 2 * LIMITS.late_window


def reference_absorb(
    tail: list[Event], base: SessionState | None, event: Event, window: int
) -> tuple[list[Event], SessionState | None, SessionState]:
    """The order rule written plainly: no rows, no mark, a re-fold whenever anything moves."""
    if tail and event.sort_key() < tail[0].sort_key() and base is not None:
        base = apply(base, event)
    else:
        tail = sorted([*tail, event], key=Event.sort_key)
    if len(tail) >= 2 * window:
        base, tail = fold(tail[:window], base), tail[window:]
    state = fold(tail, base)
    assert state is not None
    return tail, base, state


@settings(max_examples=300, deadline=None)
@given(story_events, st.permutations(range(60)), st.integers(1, 6))
def test_absorb_follows_the_plain_order_rule_for_any_arrival_order(
    events: list[Event], permutation: list[int], window: int
) -> None:
    tail: list[Event] = []
    base = None
    folded = None
    for i in permutation:
        if i < len(events):
            tail, base, expected = reference_absorb(tail, base, events[i], window)
            folded = absorb(folded, events[i], window)
            assert folded.state == expected
            assert [r[1] for r in folded.tail] == [e.event_id for e in tail]


@settings(max_examples=100, deadline=None)
@given(story_events, st.permutations(range(60)))
def test_any_arrival_order_is_deterministic_and_counts_every_event(
    events: list[Event], permutation: list[int]
) -> None:
    arrival = [events[i] for i in permutation if i < len(events)]
    store = MemoryStore(limits=LIMITS)
    folded = None
    for event in arrival:
        folded = absorb(folded, event, LIMITS.late_window)
        assert store.track(event).state == folded.state  # the store is exactly absorb
    assert folded is not None and folded.state.events_applied == len(events)
    assert Folded.from_row(folded.to_row(), "s1") == folded


def test_an_event_older_than_the_tail_is_folded_into_the_base_in_arrival_order() -> None:
    events = [ev(i, EventType.VIEW, f"P{i}", 100 + i) for i in range(20)]
    folded = None
    for event in events:
        folded = absorb(folded, event, 4)
    assert folded is not None and [row[1] for row in folded.tail] == [
        f"e{i}" for i in range(16, 20)
    ]
    late = absorb(folded, ev(99, EventType.ADD_TO_CART, "OLD", 0), 4)
    assert late.state.cart == ("OLD",) and late.state.current_product_id == "P19"
    assert late.state.first_ms == T0 and late.state.events_applied == 21


def test_the_event_cap_refuses_new_events_and_still_answers_duplicates() -> None:
    store = MemoryStore(limits=SessionLimits(max_events=3))
    for i in range(3):
        store.track(ev(i, EventType.VIEW, "P", i))
    with pytest.raises(
        SessionFull, match=r"holds 3 events, the limit of 3 \(--max-session-events\)"
    ):
        store.track(ev(3, EventType.VIEW, "P", 3))
    assert store.track(ev(1, EventType.VIEW, "P", 1)).duplicate
    assert store.forget("s1") and not store.track(ev(3, EventType.VIEW, "P", 3)).duplicate


def test_the_byte_cap_counts_the_strings_of_accepted_events() -> None:
    store = MemoryStore(limits=SessionLimits(max_bytes=100))
    store.track(ev(1, EventType.VIEW, "P" * 40))  # 2 + 40 bytes
    store.track(ev(2, EventType.VIEW, "Q" * 40))  # 84 in all
    with pytest.raises(SessionFull, match=r"holds 84 bytes of event data, the limit of 100"):
        store.track(ev(3, EventType.VIEW, "R" * 40))


@pytest.mark.parametrize("name", ["event_id", "session_id", "product_id", "customer_id",
                                  "device_type", "traffic_source"])  # fmt: skip
def test_fields_over_the_id_limit_name_the_field_and_not_the_value(name: str) -> None:
    event = replace(ev(1, EventType.VIEW, "P"), **{name: "é" * 65})  # 130 bytes, 65 characters
    with pytest.raises(InvalidArgument) as refused:
        validate_event(event, "events[3]", SessionLimits(max_id_bytes=128))
    assert str(refused.value) == f"events[3].{name} must be at most 128 bytes, got '130 bytes'"


def test_ids_with_control_characters_are_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"event\.event_id must not contain control"):
        validate_event(Event("a\x1fb", "s1", EventType.VIEW, T0, "P"))


@pytest.mark.parametrize(
    ("offset_ms", "ok"),
    [(-86_400_000, True), (-86_400_001, False), (300_000, True), (300_001, False)],
)
def test_the_timestamp_window_around_the_servers_clock(offset_ms: int, ok: bool) -> None:
    event = ev(1, EventType.VIEW, "P")
    now = event.timestamp_ms - offset_ms
    if ok:
        validate_event(event, now_ms=now)
    else:
        with pytest.raises(
            InvalidArgument,
            match=r"event\.client_timestamp must lie between 86400 s before and 300 s after the server's clock",
        ):
            validate_event(event, now_ms=now)


def test_a_year_9999_event_is_refused_by_the_window() -> None:
    event = replace(ev(1, EventType.VIEW, "P"), timestamp_ms=253_402_300_799_000)
    with pytest.raises(InvalidArgument, match=r"got '9999-12-31T23:59:59\.000\+00:00'"):
        validate_event(event, now_ms=T0)


def test_the_in_process_store_is_invisible_to_the_garbage_collector() -> None:
    """main: every event was a tracked object (with its keys, sets and lists), so a full
    collection over 300k held events paused the server for 465-660 ms."""
    store = MemoryStore(max_sessions=20_000)
    gc.collect()
    before = len(gc.get_objects())
    for s in range(5_000):
        for i in range(10):
            store.track(Event(f"e{i}", f"session-{s}", EventType.VIEW, T0 + i, f"P{i}"))
    gc.collect()
    assert len(gc.get_objects()) - before < 1_000  # 50,000 events held


def test_a_large_store_evicts_the_least_recently_tracked_session_of_a_shard() -> None:
    store = MemoryStore(max_sessions=4_096)
    for s in range(6_000):
        store.track(Event("e", f"session-{s}", EventType.VIEW, T0, "P"))
        store.track(Event("f", "always-active", EventType.VIEW, T0 + s, "P"))
    assert len(store) <= 4_096
    assert store.get("always-active") is not None and store.get("session-0") is None
    assert store.get("session-5999") is not None


def test_a_state_row_holds_every_field_in_order() -> None:
    state = SessionState("s", "c", "P1", ("P2", "P3"), ("P4",), 5, 1, 2, 3, 4.5, 0.5, True,
                         "Mobile", "Email", 9, ViewHistory.of_views(["P3", "P2", "P1"]))  # fmt: skip
    assert len(state.to_row()) == len(SessionState.__slots__) - 1  # all but the session id
    assert SessionState.from_row(state.to_row(), "s") == state
    assert SessionState.from_row([list(v) if isinstance(v, tuple) else v
                                  for v in state.to_row()], "s") == state  # fmt: skip
    as_json = json.loads(json.dumps(state.to_row()))  # what the Redis store reads back
    assert SessionState.from_row(as_json, "s") == state


def test_a_state_stored_before_histories_reads_with_an_empty_history() -> None:
    state = fold(CAMPING_STORY)
    assert state is not None
    old_row = state.to_row()[:-1]
    assert SessionState.from_row(old_row, "s1") == replace(state, history=ViewHistory())


def test_views_fold_into_the_history_in_event_time_order_whatever_the_arrival() -> None:
    state = fold(CAMPING_STORY)
    assert state is not None
    assert state.history == ViewHistory.of_views(["BOOTS", "TENT", "BAG"])
    assert state.to_context().view_history == state.history
    # the TENT view arrives last, after the BAG view it preceded: the tail is re-folded
    store = MemoryStore()
    late = [e for e in CAMPING_STORY if e.product_id != "TENT" or e.type is not EventType.VIEW]
    for event in [*late, CAMPING_STORY[2]]:
        store.track(event)
    tracked = store.get("s1")
    assert tracked is not None and tracked.history == state.history
