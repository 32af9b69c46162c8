"""Column contracts of the training data: the notebook schema and the impressions schema."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from training.features import N_PREVIOUS

LABEL = "recommendation_clicked"
TIMESTAMP = "timestamp"
PREVIOUS_COLUMNS = tuple(f"prev_product_{k}" for k in range(1, N_PREVIOUS + 1))

# The reference notebook's columns, in its order: one row per session.
NOTEBOOK_COLUMNS: tuple[str, ...] = (
    "session_id",
    "customer_id",
    "current_product_id",
    "current_category",
    "current_price",
    *PREVIOUS_COLUMNS,
    "products_in_cart",
    "device_type",
    "traffic_source",
    "time_on_page_sec",
    "scroll_depth",
    "clicked_product_image",
    "session_length_mins",
    "products_viewed_count",
    LABEL,
)

# What an impression adds: the recommended candidate shown, and when.
CANDIDATE_COLUMNS: tuple[str, ...] = ("rec_product_id", "rec_category", "rec_price")
IMPRESSION_COLUMNS: tuple[str, ...] = (*NOTEBOOK_COLUMNS, *CANDIDATE_COLUMNS, TIMESTAMP)

ID_COLUMNS = ("session_id", "customer_id", "current_product_id")
PRICE_COLUMNS = ("current_price", "rec_price")
# Counts and durations: never negative (the features divide by session_length_mins + 1).
NON_NEGATIVE_COLUMNS = (
    "products_in_cart",
    "time_on_page_sec",
    "session_length_mins",
    "products_viewed_count",
)
BINARY_COLUMNS = ("clicked_product_image", LABEL)
NUMERIC_COLUMNS = (
    *PRICE_COLUMNS,
    *NON_NEGATIVE_COLUMNS,
    "scroll_depth",
    *BINARY_COLUMNS,
)
STRING_COLUMNS = tuple(c for c in IMPRESSION_COLUMNS if c not in NUMERIC_COLUMNS)

# Which feature set (training/features.py) each schema trains.
CANDIDATE_SET = "candidate"
SESSION_SET = "session"


class DataError(ValueError):
    """Input data that cannot be used: a missing column, or too many bad rows."""


def required_columns(feature_set: str) -> tuple[str, ...]:
    """The columns a file must have to train the given feature set (timestamp is optional)."""
    if feature_set == CANDIDATE_SET:
        return (*NOTEBOOK_COLUMNS, *CANDIDATE_COLUMNS)
    return NOTEBOOK_COLUMNS


def detect_feature_set(columns: Iterable[str]) -> str:
    """ "candidate" when any rec_ column is present (impressions), else "session" (notebook).

    Raises DataError naming the missing columns of the schema the file resembles.
    """
    present = set(columns)
    feature_set = CANDIDATE_SET if present & set(CANDIDATE_COLUMNS) else SESSION_SET
    missing = [c for c in required_columns(feature_set) if c not in present]
    if missing:
        schema = "impressions" if feature_set == CANDIDATE_SET else "notebook"
        raise DataError(f"missing required column(s) for the {schema} schema: {', '.join(missing)}")
    return feature_set


def notebook_view(impressions: pd.DataFrame) -> pd.DataFrame:
    """The notebook's schema from impressions: one row per session (its first impression)."""
    first = impressions.drop_duplicates("session_id", keep="first")
    return first.loc[:, list(NOTEBOOK_COLUMNS)].reset_index(drop=True)
