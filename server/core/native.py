"""The native scoring path: model.so's request kernel builds and scores a request's rows in C,
checked at load against the numpy builder it must match bit for bit (for a sequence bundle,
with the session's view history packed beside its values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from reco import (
    MAX_HISTORY,
    NO_PRODUCT,
    TOLERANCES,
    CandidateInputs,
    RequestKernel,
    RequestKernelError,
    SessionContext,
    ViewHistory,
    context_history,
    pack_history,
    session_values,
)

if TYPE_CHECKING:  # model.py calls check_against_builder at load
    from server.core.model import LoadedModel

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
T = TypeVar("T")

# The load-time check's synthetic sessions (beside the empty one); each scores the whole
# catalog (up to CHECK_PRODUCTS products, else a sample of that many: check_products) plus an
# unknown product with a given category and price.
CHECK_SESSIONS = 8
CHECK_PRODUCTS = 20_000


def kernel_of(model: LoadedModel) -> RequestKernel:
    """The model's request kernel (call only when model.kernel is set)."""
    kernel = model.kernel
    assert kernel is not None, "the python scoring path has no request kernel"
    return kernel


def history_of(model: LoadedModel, context: SessionContext) -> bytes | None:
    """The context's view history as the sequence kernel reads it (the one reco.sequence_inputs
    builds rows from); None for a candidate bundle, whose kernel reads none."""
    if model.sequence_tables is None:
        return None
    return pack_history(context_history(context), model.catalog.index)


def native_scores(model: LoadedModel, context: SessionContext, index: I64,
                  codes: F32 | None = None, prices: F32 | None = None) -> F64:  # fmt: skip
    """Click probabilities of the candidates (catalog indices, NO_PRODUCT = unknown with the
    given code and price) for one context, rows built and scored in C."""
    values = session_values(context, model.encodings, model.catalog)
    return kernel_of(model).score(values.values, values.current_index, values.previous_indices,
                                  index, codes, prices,
                                  history=history_of(model, context))  # fmt: skip


def native_rows(model: LoadedModel, context: SessionContext, index: I64,
                codes: F32 | None = None, prices: F32 | None = None) -> F32:  # fmt: skip
    """The rows native_scores scores (for explanations and checks)."""
    values = session_values(context, model.encodings, model.catalog)
    return kernel_of(model).rows(values.values, values.current_index, values.previous_indices,
                                 index, codes, prices,
                                 history=history_of(model, context))  # fmt: skip


def check_contexts(model: LoadedModel, count: int = CHECK_SESSIONS,
                   seed: int = 0) -> list[SessionContext]:  # fmt: skip
    """The empty context and `count` varied ones over the catalog: every field given or
    missing, unknown current and previous products, unseen category, device and traffic; and
    a view history of 0..MAX_HISTORY products (unknown ones among them), or none (the
    history then comes from the previous and current products)."""
    rng = np.random.default_rng(seed)
    product_ids = model.catalog.product_ids
    vocabularies = model.encodings

    def product() -> str:  # a catalog product, or one in len + 1 unknown (one draw, any size)
        at = int(rng.integers(len(product_ids) + 1))
        return str(product_ids[at]) if at < len(product_ids) else "unknown-product"

    def maybe(value: T) -> T | None:
        return value if rng.random() < 0.7 else None

    def pick(values: tuple[str, ...]) -> str:
        return str(rng.choice([*values, "unseen"]))

    contexts = [SessionContext()]
    for _ in range(count):
        contexts.append(
            SessionContext(
                current_product_id=product() if rng.random() < 0.8 else "",
                current_category=maybe(pick(vocabularies.category.values)),
                current_price=maybe(float(rng.uniform(1, 400))),
                previous_product_ids=tuple(product() for _ in range(int(rng.integers(0, 4)))),
                products_in_cart=maybe(int(rng.integers(0, 5))),
                device_type=maybe(pick(vocabularies.device_type.values)),
                traffic_source=maybe(pick(vocabularies.traffic_source.values)),
                time_on_page_sec=maybe(float(rng.choice([60.0, rng.uniform(0, 400)]))),
                scroll_depth=maybe(float(rng.choice([0.6, 0.3, rng.uniform(0, 1)]))),
                clicked_product_image=maybe(bool(rng.random() < 0.5)),
                session_length_mins=maybe(float(rng.uniform(0, 40))),
                products_viewed_count=maybe(int(rng.integers(0, 20))),
                view_history=maybe(random_history(rng, product)),
            )
        )
    return contexts


def random_history(rng: np.random.Generator, product: Callable[[], str]) -> ViewHistory:
    """A view history of 0..MAX_HISTORY + 8 views, each drawn by `product` (repeats fold in)."""
    return ViewHistory.of_views([product() for _ in range(int(rng.integers(0, MAX_HISTORY + 9)))])


def check_products(model: LoadedModel, contexts: list[SessionContext], seed: int = 0) -> I64:
    """The catalog indices the load check scores: all of them up to CHECK_PRODUCTS; above, the
    first and last products, the products the contexts name and their affinity neighbours
    (where the affinity columns are not 0), and a seeded sample filling CHECK_PRODUCTS."""
    n = len(model.catalog)
    if n <= CHECK_PRODUCTS:
        return np.arange(n, dtype=np.int64)
    index = model.catalog.index
    named = {index[p] for c in contexts
             for p in (c.current_product_id, *c.previous_product_ids,
                       *(c.view_history.product_ids if c.view_history else ()))
             if p in index}  # fmt: skip
    neighbours = [model.tables.affinity.neighbours(i)[0] for i in sorted(named)]
    sample = np.random.default_rng(seed).choice(n, CHECK_PRODUCTS, replace=False)
    chosen = np.concatenate([[0, n - 1], sorted(named), *neighbours, sample]).astype(np.int64)
    _, first = np.unique(chosen, return_index=True)
    return np.sort(chosen[np.sort(first)[:CHECK_PRODUCTS]])


def check_against_builder(model: LoadedModel) -> float:
    """Holds the model's kernel to the numpy path on check_contexts: the whole catalog (or
    check_products' sample of a large one) read from the kernel's own tables, and an unknown
    and a known product with a given category and price; rows bit-identical to the numpy
    builder's (LoadedModel.rows: reco.build_features over the model's lookups, with
    reco.sequence_inputs for a sequence bundle), scores within the backend's parity
    tolerance of backend.predict on those rows. Returns the largest score
    difference; raises RequestKernelError."""
    contexts = check_contexts(model)
    catalog_index = check_products(model, contexts)
    given_index = np.array([NO_PRODUCT, 0 if len(model.catalog) else NO_PRODUCT])
    given_codes = np.array([0.0, -1.0], dtype=np.float32)
    given_prices = np.array([42.5, 7.25], dtype=np.float32)
    requests: list[tuple[I64, F32 | None, F32 | None]] = [
        (catalog_index, None, None),
        (given_index, given_codes, given_prices),
    ]
    worst = 0.0
    for number, context in enumerate(contexts):
        for index, codes, prices in requests:
            candidates = CandidateInputs(
                model.product_category_codes[index] if codes is None else codes,
                model.product_prices[index] if prices is None else prices,
                index,
            )
            expected = model.rows(context, candidates)
            rows = native_rows(model, context, index, codes, prices)
            bits, expected_bits = rows.view(np.uint32), expected.view(np.uint32)
            if rows.shape != expected.shape or not np.array_equal(bits, expected_bits):
                differ = np.flatnonzero((bits != expected_bits).any(axis=1))
                raise RequestKernelError(
                    f"native rows differ from the numpy builder's for check session {number}: "
                    f"{len(differ)} of {len(index)} rows, first row {int(differ[0])}"
                )
            diff = np.abs(
                native_scores(model, context, index, codes, prices)
                - model.backend.predict(expected)
            )
            worst = max(worst, float(np.max(np.nan_to_num(diff, nan=np.inf), initial=0.0)))
    tolerance = TOLERANCES.get(model.backend.name, 0.0)
    if worst > tolerance:
        raise RequestKernelError(
            f"native scores differ from the {model.backend.name} backend's by {worst:.3g} "
            f"(> {tolerance:g})"
        )
    return worst
