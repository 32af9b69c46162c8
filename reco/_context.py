"""The session context: one type from the session stores through scoring into the builder."""

from __future__ import annotations

from dataclasses import dataclass

from reco._sequence import ViewHistory


@dataclass(frozen=True, slots=True)
class SessionContext:
    """The shopper's live context as the model sees it; None = not given (missing to the model).

    Filled in by the transport from a request's context, or by a session store from the
    tracked events (SessionState.context); the feature builder reads it as it is
    (session_inputs). `cart_product_ids` and `viewed_product_ids` come only from tracked
    sessions: Recommend's business rules read the cart. `view_history` is the tracked session's
    decayed views (the sequence feature set's input); None for a context sent in a request,
    whose history the builder takes from its previous and current products
    (docs/architecture.md, "The session context").
    """

    session_id: str = ""
    customer_id: str = ""
    current_product_id: str = ""
    current_category: str | None = None
    current_price: float | None = None
    previous_product_ids: tuple[str, ...] = ()  # most recent first
    products_in_cart: int | None = None
    device_type: str | None = None
    traffic_source: str | None = None
    time_on_page_sec: float | None = None
    scroll_depth: float | None = None
    clicked_product_image: bool | None = None
    session_length_mins: float | None = None
    products_viewed_count: int | None = None
    cart_product_ids: tuple[str, ...] = ()  # in the order they were added
    view_history: ViewHistory | None = None

    def only_session_id(self) -> bool:
        """True when the caller sent a session id and nothing else (complete it from the store)."""
        return bool(self.session_id) and self == SessionContext(session_id=self.session_id)
