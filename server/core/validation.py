"""Every check on request values, in one place; each failure names the field path and value."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from reco import N_PREVIOUS, SessionContext
from server.core.errors import InvalidArgument, LimitExceeded
from server.core.requests import Candidates, FeatureRows, ScoreQuery
from server.core.sessions import DEFAULT_LIMITS, NEEDS_PRODUCT, Event, SessionLimits

FLOAT32_BYTES = 4


def positive_price(field: str, value: float) -> None:
    """Prices must be finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgument(field, value, "must be a finite number > 0")


def non_negative(field: str, value: float | None) -> None:
    """Durations and counts must be finite and >= 0 when given."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise InvalidArgument(field, value, "must be a finite number >= 0")


def unit_interval(field: str, value: float | None) -> None:
    """Fractions (scroll depth, score thresholds) must lie in [0, 1] when given."""
    if value is not None and not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise InvalidArgument(field, value, "must be between 0 and 1")


def validate_context(context: SessionContext, prefix: str = "context") -> None:
    """Raises InvalidArgument for the first malformed field of a session context."""
    if context.current_price is not None:
        positive_price(f"{prefix}.current_price", context.current_price)
    unit_interval(f"{prefix}.scroll_depth", context.scroll_depth)
    non_negative(f"{prefix}.time_on_page_sec", context.time_on_page_sec)
    non_negative(f"{prefix}.session_length_mins", context.session_length_mins)
    non_negative(f"{prefix}.products_in_cart", context.products_in_cart)
    non_negative(f"{prefix}.products_viewed_count", context.products_viewed_count)
    if len(context.previous_product_ids) > N_PREVIOUS:
        raise InvalidArgument(
            f"{prefix}.previous_product_ids",
            len(context.previous_product_ids),
            f"may hold at most {N_PREVIOUS} ids (most recent first)",
        )
    for k, product_id in enumerate(context.previous_product_ids):
        if not product_id:
            raise InvalidArgument(
                f"{prefix}.previous_product_ids[{k}]", product_id, "must not be empty"
            )


def validate_candidates(candidates: Candidates, max_candidates: int) -> None:
    """Count limit, non-empty ids, valid price overrides (category overrides need no check)."""
    if len(candidates) > max_candidates:
        raise LimitExceeded(candidates.field, len(candidates), max_candidates, "candidates")
    ids = candidates.product_ids
    if not all(ids):  # C-level scan; the index is only searched for when one is empty
        raise InvalidArgument(candidates.id_path(ids.index("")), "", "must not be empty")
    for i, price in candidates.prices.items():
        positive_price(f"candidates[{i}].price", price)
    for i, category in candidates.categories.items():
        if not category:
            raise InvalidArgument(
                f"candidates[{i}].category", category, "must not be empty when set"
            )


def validate_feature_rows(rows: FeatureRows, n_features: int, max_rows: int) -> None:
    """Shape and size of a client-built feature matrix."""
    if rows.cols != n_features:
        raise InvalidArgument(
            "features.cols", rows.cols, f"must equal the model's {n_features} features"
        )
    if rows.rows <= 0:
        raise InvalidArgument("features.rows", rows.rows, "must be > 0")
    if rows.rows > max_rows:
        raise LimitExceeded("features", rows.rows, max_rows, "rows")
    expected = rows.rows * rows.cols * FLOAT32_BYTES
    if len(rows.data) != expected:
        raise InvalidArgument(
            "features.data",
            f"{len(rows.data)} bytes",
            f"must hold rows x cols float32 = {expected} bytes",
        )


def validate_score_options(query: ScoreQuery) -> None:
    """min_score and top_k of a Score request."""
    unit_interval("min_score", query.min_score)
    if query.top_k < 0:
        raise InvalidArgument("top_k", query.top_k, "must be >= 0 (0 = all that pass min_score)")


def require_session_id(session_id: str) -> None:
    """Recommend and ForgetSession name a session."""
    if not session_id:
        raise InvalidArgument("session_id", session_id, "must not be empty")


def validate_recommend(
    session_id: str, k: int, max_k: int, max_per_category: int, min_score: float | None
) -> None:
    """The fields of a Recommend request."""
    require_session_id(session_id)
    if not 0 <= k <= max_k:
        raise InvalidArgument("k", k, f"must be between 0 and {max_k} (0 = the default 3)")
    if max_per_category < 0:
        raise InvalidArgument("max_per_category", max_per_category, "must be >= 0")
    unit_interval("min_score", min_score)


# Fields that identify things; the dedup index of the in-process store separates event ids with
# a control character, so ids may not contain any.
_ID_FIELDS = ("event_id", "session_id", "product_id", "customer_id")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_event(
    event: Event,
    prefix: str = "event",
    limits: SessionLimits = DEFAULT_LIMITS,
    now_ms: int | None = None,
) -> None:
    """Raises InvalidArgument naming the first malformed field of an event; with now_ms (the
    server's clock), a client timestamp outside the accepted window is refused too."""
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
    for name in (*_ID_FIELDS, "device_type", "traffic_source"):
        text: str = getattr(event, name)
        size = len(text.encode())
        if size > limits.max_id_bytes:
            # The length, not the value: an oversized value must not come back in the status.
            raise InvalidArgument(
                f"{prefix}.{name}", f"{size} bytes", f"must be at most {limits.max_id_bytes} bytes"
            )
        if name in _ID_FIELDS and _CONTROL.search(text):
            raise InvalidArgument(f"{prefix}.{name}", text, "must not contain control characters")
    if event.timestamp_ms < 0:
        raise InvalidArgument(
            f"{prefix}.client_timestamp", event.timestamp_ms, "must not be before 1970"
        )
    if now_ms is not None:
        earliest = now_ms - int(limits.max_age_seconds * 1000)
        latest = now_ms + int(limits.max_ahead_seconds * 1000)
        if not earliest <= event.timestamp_ms <= latest:
            raise InvalidArgument(
                f"{prefix}.client_timestamp",
                _iso(event.timestamp_ms),
                f"must lie between {limits.max_age_seconds:g} s before and "
                f"{limits.max_ahead_seconds:g} s after the server's clock ({_iso(now_ms)})",
            )
    unit_interval(f"{prefix}.scroll_depth", event.scroll_depth)
    non_negative(f"{prefix}.time_on_page_sec", event.time_on_page_sec)


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms since 1970"
