"""The one feature builder, for training and serving: (session, candidate) rows to float32.

The pandas-free core; training/features.py adapts training frames to it (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from reco import _sequence as sequence_set
from reco._catalog import NO_PRODUCT, Catalog, ProductTables
from reco._context import SessionContext

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# The reference notebook's 19 session-level features, in its order.
SESSION_FEATURES: tuple[str, ...] = (
    "category_enc",
    "current_price",
    "products_in_cart",
    "device_enc",
    "traffic_enc",
    "time_on_page_sec",
    "scroll_depth",
    "clicked_product_image",
    "session_length_mins",
    "products_viewed_count",
    "has_items_in_cart",
    "high_engagement",
    "premium_product",
    "low_price_product",
    "multi_product_session",
    "engagement_score",
    "engaged_shopper",
    "quick_browser",
    "session_intensity",
)

# What the candidate product adds to the row: the session-aware part of the model.
CANDIDATE_FEATURES: tuple[str, ...] = (
    "rec_category_enc",
    "rec_price",
    "price_ratio",
    "same_category",
    "rec_in_previous",
    "affinity_current",
    "affinity_previous",
    "rec_popularity",
)

FEATURE_NAMES: tuple[str, ...] = SESSION_FEATURES + CANDIDATE_FEATURES

# Feature sets a bundle can be trained on; the manifest records which one and its names.
# "sequence" adds the decayed whole-session history (reco/_sequence.py). The server serves the
# candidate and sequence sets (CANDIDATE_SETS).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "candidate": FEATURE_NAMES,
    "session": SESSION_FEATURES,
    "sequence": FEATURE_NAMES + sequence_set.SEQUENCE_FEATURES,
}
# Feature sets whose rows are (session, candidate) pairs.
CANDIDATE_SETS = ("candidate", "sequence")

# A value never seen in training encodes to this reserved code (vocabulary codes are 0..K-1).
UNKNOWN_CODE = -1.0

NONE_PRODUCT = "NONE"
# Previous products a session carries, most recent first.
N_PREVIOUS = 3


@dataclass(frozen=True)
class Vocabulary:
    """A frozen, sorted list of categorical values; code = position, unseen = UNKNOWN_CODE."""

    values: tuple[str, ...]
    _codes: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if list(self.values) != sorted(set(self.values)):
            raise ValueError("vocabulary values must be sorted and unique")
        object.__setattr__(self, "_codes", {v: float(i) for i, v in enumerate(self.values)})

    @classmethod
    def fit(cls, values: npt.ArrayLike) -> Vocabulary:
        """The sorted distinct values seen (training data only)."""
        return cls(tuple(sorted({str(v) for v in np.asarray(values).ravel().tolist()})))

    def code(self, value: str) -> float:
        """Code of one value (the serving path: a dict lookup)."""
        return self._codes.get(value, UNKNOWN_CODE)

    def encode(self, values: npt.ArrayLike) -> F32:
        """Codes of many values at once (the training path); agrees with code() value by value."""
        arr = np.asarray(values, dtype=np.str_)
        if not self.values:
            return np.full(arr.shape, UNKNOWN_CODE, dtype=np.float32)
        vocab = np.asarray(self.values, dtype=np.str_)
        pos = np.clip(np.searchsorted(vocab, arr), 0, len(vocab) - 1)
        return np.where(vocab[pos] == arr, pos, UNKNOWN_CODE).astype(np.float32)


@dataclass(frozen=True)
class Encodings:
    """The frozen categorical encodings written to (and read from) the bundle manifest."""

    category: Vocabulary
    device_type: Vocabulary
    traffic_source: Vocabulary

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's `encodings` entry."""
        return {
            "category": list(self.category.values),
            "device_type": list(self.device_type.values),
            "traffic_source": list(self.traffic_source.values),
            "unknown_code": UNKNOWN_CODE,
        }

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> Encodings:
        """Reads the manifest's `encodings` entry back."""
        if float(entry.get("unknown_code", UNKNOWN_CODE)) != UNKNOWN_CODE:
            raise ValueError(
                f"bundle uses unknown_code {entry['unknown_code']}, expected {UNKNOWN_CODE}"
            )
        return cls(
            category=Vocabulary(tuple(entry["category"])),
            device_type=Vocabulary(tuple(entry["device_type"])),
            traffic_source=Vocabulary(tuple(entry["traffic_source"])),
        )


# A session column: a float64 array over rows (training) or one Python float (one live context).
# The formulas below use only operators and numpy functions that accept both, so training and
# serving run literally the same code; inputs are rounded to float32 first and every operation
# is an IEEE double operation in both cases, so the two paths agree bit for bit.
Column = Any


@dataclass(frozen=True)
class SessionInputs:
    """Numeric session context: float64 arrays of length n, or Python floats for one context.

    Missing values are NaN. current_index is the catalog index of the product on screen
    (NO_PRODUCT = none); previous_index has shape (n, N_PREVIOUS), or (N_PREVIOUS,) for one
    context, most recent first.
    """

    category_code: Column
    current_price: Column
    products_in_cart: Column
    device_code: Column
    traffic_code: Column
    time_on_page_sec: Column
    scroll_depth: Column
    clicked_product_image: Column
    session_length_mins: Column
    products_viewed_count: Column
    current_index: Any  # int64 array (n,) or int
    previous_index: I64


@dataclass(frozen=True)
class CandidateInputs:
    """Numeric candidate columns, one entry per row."""

    category_code: F32
    price: F32
    product_index: I64

    def __len__(self) -> int:
        return len(self.category_code)


def catalog_columns(encodings: Encodings, catalog: Catalog) -> tuple[F32, F32]:
    """Every catalog product's category code and price as a candidate row reads them, padded
    like ProductTables (entry len(catalog), index NO_PRODUCT: NaN): built once per bundle."""
    codes = np.append(encodings.category.encode(catalog.categories), np.float32(np.nan))
    prices = np.append(catalog.prices, np.float32(np.nan))
    return codes.astype(np.float32), prices.astype(np.float32)


def input_column(values: Any) -> npt.NDArray[np.float64]:
    """A numeric input column as float64 after rounding to float32 (both paths do this)."""
    # Every input is rounded to float32 first, so a price read from CSV (float64) and the same
    # price sent over gRPC (float32) give bit-identical features.
    return np.asarray(values, dtype=np.float32).astype(np.float64).reshape(-1)


def _flag(condition: Any, *inputs: Column) -> Column:
    """1.0/0.0, or NaN where any input is missing (LightGBM routes NaN as missing).

    x * 0.0 is 0.0 for finite x and NaN for NaN, which keeps this operator-only.
    """
    out = condition * 1.0
    for value in inputs:
        out = out + value * 0.0
    return out


def session_feature_columns(s: SessionInputs) -> list[Column]:
    """The 19 notebook features, in SESSION_FEATURES order."""
    price = s.current_price
    cart = s.products_in_cart
    time = s.time_on_page_sec
    scroll = s.scroll_depth
    minutes = s.session_length_mins
    viewed = s.products_viewed_count
    return [
        s.category_code,
        price,
        cart,
        s.device_code,
        s.traffic_code,
        time,
        scroll,
        s.clicked_product_image,
        minutes,
        viewed,
        _flag(cart > 0, cart),
        _flag((time >= 60) & (scroll >= 0.6), time, scroll),
        _flag(price > 100, price),
        _flag(price < 30, price),
        _flag(viewed >= 3, viewed),
        np.clip(time / 300.0 * scroll, 0.0, 1.0),
        _flag((minutes >= 10) & (viewed >= 3), minutes, viewed),
        _flag((time < 30) & (scroll < 0.3), time, scroll),
        # minutes >= 0 is enforced by validation and data-quality checks, so no division by 0.
        viewed / (minutes + 1.0),
    ]


def candidate_feature_columns(
    s: SessionInputs, c: CandidateInputs, tables: ProductTables
) -> list[npt.NDArray[np.floating[Any]]]:
    """The candidate features, in CANDIDATE_FEATURES order (each an array of len(c)).

    Candidate category codes are never NaN (a candidate always has a category, given or from
    the catalog); the session's may be. Written as a handful of whole-array operations because
    each numpy call costs about a microsecond at serving batch sizes.
    """
    cand = c.product_index
    prev = [s.previous_index[..., k] for k in range(N_PREVIOUS)]
    known = cand != NO_PRODUCT
    same_category = ((c.category_code == s.category_code) & (c.category_code != UNKNOWN_CODE)) * 1.0
    # Index NO_PRODUCT (-1) reads 0 (the padding): unknown products have no affinity.
    lookup = tables.affinity.lookup
    return [
        c.category_code,
        c.price,
        # Prices are validated > 0 or NaN, so this is a ratio or NaN; one IEEE division either way.
        c.price / s.current_price,
        same_category + s.category_code * 0.0,  # NaN when the session's category is missing
        ((cand == prev[0]) | (cand == prev[1]) | (cand == prev[2])) & known,
        lookup(s.current_index, cand),
        np.maximum(np.maximum(lookup(prev[0], cand), lookup(prev[1], cand)), lookup(prev[2], cand)),
        tables.popularity[cand],
    ]


def _block(columns: list[Any]) -> npt.NDArray[np.float64]:
    """Columns to a (rows, k) block; a list of scalars becomes a (k,) row that broadcasts."""
    block = np.array(columns, dtype=np.float64)
    return block.T if block.ndim == 2 else block


@dataclass(frozen=True)
class SequenceInputs:
    """What the sequence set adds: session histories, which one each candidate row reads, slots.

    Serving: one session's Histories, row all zeros, slot SERVING_SLOT (sequence_inputs).
    """

    history: sequence_set.Histories
    row: I64
    slot: npt.NDArray[np.float64]
    tables: sequence_set.SequenceTables


def context_history(context: SessionContext) -> sequence_set.ViewHistory:
    """The context's view history: the tracked one, else (a context sent in a request) the
    views its previous products and the product on screen describe, oldest first."""
    if context.view_history is not None:
        return context.view_history
    views = [*reversed(context.previous_product_ids[:N_PREVIOUS]), context.current_product_id]
    return sequence_set.ViewHistory.of_views([view for view in views if view])


def sequence_inputs(
    context: SessionContext,
    catalog: Catalog,
    sequence_tables: sequence_set.SequenceTables,
    n_candidates: int,
) -> SequenceInputs:
    """The serving side of the sequence set: one context's history (context_history) for n
    candidates, all in the serving slot. Pure: the same history gives the same rows."""
    return SequenceInputs(
        history=sequence_set.Histories.of([context_history(context)], catalog.index),
        row=np.zeros(n_candidates, dtype=np.int64),
        slot=np.full(n_candidates, sequence_set.SERVING_SLOT),
        tables=sequence_tables,
    )


def build_features(
    session: SessionInputs,
    candidates: CandidateInputs | None,
    tables: ProductTables | None,
    feature_set: str = "candidate",
    sequence: SequenceInputs | None = None,
) -> F32:
    """The model's input matrix: C-contiguous float32, shape (rows, len(feature names)).

    With feature_set="candidate" (or "sequence"), rows = len(candidates) and a one-context
    session is broadcast to every candidate (the serving case); with "session", rows = the
    session's rows. "sequence" also needs `sequence`.
    """
    session_block = _block(session_feature_columns(session))
    if feature_set == "session":
        return np.ascontiguousarray(np.atleast_2d(session_block), dtype=np.float32)
    if feature_set not in CANDIDATE_SETS:
        raise ValueError(
            f"unknown feature_set {feature_set!r}; expected one of {list(FEATURE_SETS)}"
        )
    if candidates is None or tables is None:
        raise ValueError(f"the {feature_set} feature set needs candidates and product tables")
    if feature_set == "sequence" and sequence is None:
        raise ValueError("the sequence feature set needs the session histories")
    n_session = len(SESSION_FEATURES)
    out = np.empty((len(candidates), len(FEATURE_SETS[feature_set])), dtype=np.float32)
    out[:, :n_session] = session_block  # one context broadcasts over the candidates
    for j, column in enumerate(candidate_feature_columns(session, candidates, tables), n_session):
        out[:, j] = column
    if sequence is not None and feature_set == "sequence":
        n = len(candidates)
        current = np.broadcast_to(session.current_index, (n,))
        previous = np.broadcast_to(session.previous_index, (n, N_PREVIOUS))
        columns = sequence_set.history_columns(
            sequence.history,
            sequence.row,
            candidates.product_index,
            current,
            previous,
            sequence.slot,
            sequence.tables,
        )
        for j, column in enumerate(columns, len(FEATURE_NAMES)):
            out[:, j] = column
    return out


# ---------------------------------------------------------------------------------------------
# From one live context (the serving path: scalars in, length-1 arrays out)


def _round32(values: list[float]) -> list[float]:
    """Rounds to float32 and back, as the training path does to every input column."""
    rounded: list[float] = np.array(values, dtype=np.float32).astype(np.float64).tolist()
    return rounded


def _opt(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _code(vocabulary: Vocabulary, value: str | None) -> float:
    # Not given (or blank) is missing (NaN); given but never seen in training is the reserved
    # unknown code. _frame_codes does the same for training frames.
    return np.nan if not value else vocabulary.code(value)


@dataclass(frozen=True, slots=True)
class SessionValues:
    """One live context's numeric inputs before rounding: the 10 SESSION_INPUTS values in
    order (vocabulary codes looked up, NaN = missing), the current product's catalog index
    and N_PREVIOUS previous ones (NO_PRODUCT = none). The request kernel takes them as they
    are (its C rounds to float32); session_inputs rounds them for the numpy builder."""

    values: tuple[float, ...]
    current_index: int
    previous_indices: tuple[int, ...]


def session_values(
    context: SessionContext, encodings: Encodings, catalog: Catalog
) -> SessionValues:
    """The string lookups of one live context (vocabularies, catalog): the current product's
    category and price default to the catalog's. None means "not given" and becomes NaN
    (missing); an unseen string becomes UNKNOWN_CODE."""
    index = catalog.index
    current = index.get(context.current_product_id, NO_PRODUCT)
    category, price = context.current_category, context.current_price
    if category is None and current != NO_PRODUCT:
        category = str(catalog.categories[current])
    if price is None and current != NO_PRODUCT:
        price = float(catalog.prices[current])
    previous = [index.get(p, NO_PRODUCT) for p in context.previous_product_ids[:N_PREVIOUS]]
    previous += [NO_PRODUCT] * (N_PREVIOUS - len(previous))
    clicked = context.clicked_product_image
    values = (
        _code(encodings.category, category),
        _opt(price),
        _opt(context.products_in_cart),
        _code(encodings.device_type, context.device_type),
        _code(encodings.traffic_source, context.traffic_source),
        _opt(context.time_on_page_sec),
        _opt(context.scroll_depth),
        np.nan if clicked is None else float(clicked),
        _opt(context.session_length_mins),
        _opt(context.products_viewed_count),
    )
    return SessionValues(values, current, tuple(previous))


def session_inputs(
    context: SessionContext, encodings: Encodings, catalog: Catalog
) -> SessionInputs:
    """Session inputs for one live context (Python floats, rounded to float32 as the training
    path rounds every input column): session_values, rounded."""
    looked_up = session_values(context, encodings, catalog)
    (category_code, price, cart, device, traffic, time, scroll, image, minutes, viewed) = _round32(
        list(looked_up.values)
    )
    return SessionInputs(
        category_code=category_code,
        current_price=price,
        products_in_cart=cart,
        device_code=device,
        traffic_code=traffic,
        time_on_page_sec=time,
        scroll_depth=scroll,
        clicked_product_image=image,
        session_length_mins=minutes,
        products_viewed_count=viewed,
        current_index=looked_up.current_index,
        previous_index=np.array(looked_up.previous_indices, dtype=np.int64),
    )
