"""The feature builder's training side: impressions frames to the core's inputs (reco)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import (
    CANDIDATE_SETS,
    N_PREVIOUS,
    NO_PRODUCT,
    SEQUENCE_FEATURES,
    CandidateInputs,
    Catalog,
    Encodings,
    Histories,
    ProductTables,
    SequenceTables,
    SessionInputs,
    Vocabulary,
    build_features,
    history_columns,
    input_column,
)
from training.pages import page_views
from training.schema import SLOT
from training.sequence import PAGES_PER_BLOCK, page_histories

F32 = npt.NDArray[np.float32]
# What a model may read when it is to know nothing of the live session: the candidate alone.
CONTEXT_FREE_FEATURES = ("rec_category_enc", "rec_price", "rec_popularity")


def mask_context(X: F32, names: tuple[str, ...]) -> F32:
    """The rows with every feature but the candidate's own (CONTEXT_FREE_FEATURES) missing:
    LightGBM then never splits on the others, so the bundle serves the usual rows and ignores
    the session (a context-free model behind the same interface)."""
    keep = np.array([name in CONTEXT_FREE_FEATURES for name in names])
    out = X.copy()
    out[:, ~keep] = np.nan
    return out


def _frame_codes(vocabulary: Vocabulary, column: pd.Series) -> F32:
    """Codes of a categorical column; a blank or null value is missing (NaN), as on the serving
    side, and only a value never seen in training gets UNKNOWN_CODE."""
    text = column.fillna("").astype(str).to_numpy()
    codes = vocabulary.encode(text)
    codes[text == ""] = np.nan
    return codes


def session_inputs_from_frame(
    frame: pd.DataFrame, encodings: Encodings, catalog: Catalog | None
) -> SessionInputs:
    """Session inputs from a frame in the notebook's columns (one row per impression)."""
    n = len(frame)
    if catalog is not None:
        current_index = catalog.indices_of(frame["current_product_id"].astype(str).to_numpy())
        previous_index = np.stack(
            [
                catalog.indices_of(frame[f"prev_product_{k}"].astype(str).to_numpy())
                for k in range(1, N_PREVIOUS + 1)
            ],
            axis=1,
        )
    else:
        current_index = np.full(n, NO_PRODUCT, dtype=np.int64)
        previous_index = np.full((n, N_PREVIOUS), NO_PRODUCT, dtype=np.int64)
    return SessionInputs(
        category_code=input_column(_frame_codes(encodings.category, frame["current_category"])),
        current_price=input_column(frame["current_price"]),
        products_in_cart=input_column(frame["products_in_cart"]),
        device_code=input_column(_frame_codes(encodings.device_type, frame["device_type"])),
        traffic_code=input_column(_frame_codes(encodings.traffic_source, frame["traffic_source"])),
        time_on_page_sec=input_column(frame["time_on_page_sec"]),
        scroll_depth=input_column(frame["scroll_depth"]),
        clicked_product_image=input_column(frame["clicked_product_image"]),
        session_length_mins=input_column(frame["session_length_mins"]),
        products_viewed_count=input_column(frame["products_viewed_count"]),
        current_index=current_index,
        previous_index=previous_index.reshape(n, N_PREVIOUS),
    )


def candidate_inputs_from_frame(
    frame: pd.DataFrame, encodings: Encodings, catalog: Catalog
) -> CandidateInputs:
    """Candidate inputs from a frame's rec_product_id, rec_category and rec_price columns."""
    return CandidateInputs(
        category_code=_frame_codes(encodings.category, frame["rec_category"]),
        price=np.asarray(frame["rec_price"], dtype=np.float32),
        product_index=catalog.indices_of(frame["rec_product_id"].astype(str).to_numpy()),
    )


def slots_from_frame(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The slot column (NaN = not logged)."""
    if SLOT not in frame.columns:
        return np.full(len(frame), np.nan)
    return input_column(pd.to_numeric(frame[SLOT], errors="coerce"))


def sequence_block_from_frame(
    frame: pd.DataFrame, catalog: Catalog, tables: ProductTables
) -> npt.NDArray[np.float64]:
    """SEQUENCE_FEATURES of every row: each session's page views folded in page order.

    A row's history is every page view of its session up to and including its own, as the
    frame holds them (page views missing from the frame are missing from the history).
    """
    sequence_tables = SequenceTables.build(catalog, tables)
    pages = page_views(frame)
    viewed = frame["current_product_id"].astype(str).to_numpy()
    histories = page_histories(pages, viewed[pages.first_row])
    candidate = catalog.indices_of(frame["rec_product_id"].astype(str).to_numpy())
    current = catalog.indices_of(viewed)
    previous = np.stack(
        [
            catalog.indices_of(frame[f"prev_product_{k}"].astype(str).to_numpy())
            for k in range(1, N_PREVIOUS + 1)
        ],
        axis=1,
    ).reshape(len(frame), N_PREVIOUS)
    slot = slots_from_frame(frame)
    out = np.empty((len(frame), len(SEQUENCE_FEATURES)))
    by_page = np.argsort(pages.row_page, kind="stable")
    starts = np.arange(0, len(pages), PAGES_PER_BLOCK)
    # rows of block b (pages b * PAGES_PER_BLOCK onwards): by_page[bounds[b] : bounds[b + 1]]
    per_block = np.bincount(pages.row_page // PAGES_PER_BLOCK, minlength=len(starts))
    page_bounds: list[int] = np.r_[0, np.cumsum(per_block)].tolist()
    for b, first in enumerate(starts.tolist()):
        rows = by_page[page_bounds[b] : page_bounds[b + 1]]
        block = Histories.of(histories[first : first + PAGES_PER_BLOCK], catalog.index)
        columns = history_columns(
            block,
            pages.row_page[rows] - first,
            candidate[rows],
            current[rows],
            previous[rows],
            slot[rows],
            sequence_tables,
        )
        out[rows] = np.column_stack(columns)
    return out


def features_from_frame(
    frame: pd.DataFrame,
    encodings: Encodings,
    catalog: Catalog | None,
    tables: ProductTables | None,
    feature_set: str = "candidate",
) -> F32:
    """The feature matrix for every row of an impressions (or notebook-schema) frame."""
    session = session_inputs_from_frame(frame, encodings, catalog)
    if feature_set not in CANDIDATE_SETS:
        return build_features(session, None, tables, feature_set)
    if catalog is None or tables is None:
        raise ValueError(f"the {feature_set} feature set needs the catalog")
    candidates = candidate_inputs_from_frame(frame, encodings, catalog)
    X = build_features(session, candidates, tables, "candidate")
    if feature_set == "candidate":
        return X
    block = sequence_block_from_frame(frame, catalog, tables)
    return np.ascontiguousarray(np.hstack([X, block.astype(np.float32)]), dtype=np.float32)
