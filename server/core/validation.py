"""Checks on request values; each failure names the field path and the bad value."""

from __future__ import annotations

import math

from reco import N_PREVIOUS
from server.core.errors import InvalidArgument, LimitExceeded
from server.core.requests import Candidates, Context, FeatureRows

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


def validate_context(context: Context, prefix: str = "context") -> None:
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
