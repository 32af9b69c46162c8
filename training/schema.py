"""Column contracts of the training data: the notebook schema and the impressions schema."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

# Previous products carried by a row, most recent first (the notebook's prev_product_1..3).
from reco import N_PREVIOUS

LABEL = "recommendation_clicked"
TIMESTAMP = "timestamp"
SLOT = "slot"  # the candidate's position on the page, 0 = first
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

# What an impression adds: the recommended candidate shown, when, and where on the page.
CANDIDATE_COLUMNS: tuple[str, ...] = ("rec_product_id", "rec_category", "rec_price")
IMPRESSION_COLUMNS: tuple[str, ...] = (*NOTEBOOK_COLUMNS, *CANDIDATE_COLUMNS, TIMESTAMP, SLOT)

# The simulator's truth, written only by the generator and never available in real data: the
# true click probability of the impression, the best a context-free model could know (the
# candidate and the customer's favourite category), and the hidden intent and favourite that let
# the evaluation recompute the true probability of any product. Never used as features.
SIM_PROBABILITY = "sim_click_probability"
SIM_CONTEXT_FREE = "sim_context_free_probability"
SIM_INTENT = "sim_intent_subcategory"
SIM_FAVOURITE = "sim_favourite_category"
SIMULATOR_COLUMNS: tuple[str, ...] = (SIM_PROBABILITY, SIM_CONTEXT_FREE, SIM_INTENT, SIM_FAVOURITE)
GENERATED_COLUMNS: tuple[str, ...] = (*IMPRESSION_COLUMNS, *SIMULATOR_COLUMNS)
# The notebook-schema export: the notebook's columns, the slot (several rows share a page view)
# and the true probability of the impression.
GENERATED_NOTEBOOK_COLUMNS: tuple[str, ...] = (*NOTEBOOK_COLUMNS, SLOT, SIM_PROBABILITY)

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
PROBABILITY_COLUMNS = ("scroll_depth", SIM_PROBABILITY, SIM_CONTEXT_FREE)
NUMERIC_COLUMNS = (
    *PRICE_COLUMNS,
    *NON_NEGATIVE_COLUMNS,
    SLOT,
    *PROBABILITY_COLUMNS,
    *BINARY_COLUMNS,
)
STRING_COLUMNS = tuple(c for c in GENERATED_COLUMNS if c not in NUMERIC_COLUMNS)

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
    """The notebook's schema from impressions: one row per recommendation shown.

    The notebook's row is a session context and whether its recommendation was clicked. A page
    view shows several, so each impression keeps its own row, told apart by its slot: the
    export has exactly the impressions' click rates. (Keeping one slot per page, say the first,
    would bias them: the first slot is clicked most.)
    """
    columns = [c for c in GENERATED_NOTEBOOK_COLUMNS if c in impressions.columns]
    return impressions.loc[:, columns].reset_index(drop=True)
