"""The live-session check: score the whole catalog for one context, as the server will."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from reco import (
    CandidateInputs,
    Catalog,
    Encodings,
    ProductTables,
    SequenceTables,
    SessionContext,
    build_features,
    sequence_inputs,
    session_inputs,
)
from training.model import predict


@dataclass(frozen=True)
class LiveContext:
    """A shopper's live session by product names (the story told in issue 5)."""

    current: str
    previous: tuple[str, ...]
    in_cart: tuple[str, ...]
    device_type: str = "Desktop"
    traffic_source: str = "Direct"
    time_on_page_sec: float = 120.0
    scroll_depth: float = 0.8
    clicked_product_image: bool = True
    session_length_mins: float = 12.0
    products_viewed_count: int = 3


# Views Hiking Boots, adds a Tent to the cart, then views a Sleeping Bag, engaged, on a desktop.
CAMPING_STORY = LiveContext(current="Sleeping Bag", previous=("Hiking Boots",), in_cart=("Tent",))


def rank_catalog(
    booster: lgb.Booster,
    encodings: Encodings,
    catalog: Catalog,
    tables: ProductTables,
    context: LiveContext,
    feature_set: str = "candidate",
) -> pd.DataFrame:
    """Every eligible product scored for the context, best first.

    Eligible as the server's rules say: in stock, not in the cart, not the product on screen.
    The sequence feature set reads the session's views as a request's context gives them: the
    previous products, oldest first, then the current one.
    """
    by_name = {str(n): str(p) for p, n in zip(catalog.product_ids, catalog.names, strict=True)}
    missing = [
        n for n in (context.current, *context.previous, *context.in_cart) if n not in by_name
    ]
    if missing:
        raise ValueError(f"catalog has no product named {missing[0]!r}")
    current = by_name[context.current]
    live = SessionContext(
        current_product_id=current,
        previous_product_ids=tuple(by_name[n] for n in context.previous),
        products_in_cart=len(context.in_cart),
        device_type=context.device_type,
        traffic_source=context.traffic_source,
        time_on_page_sec=context.time_on_page_sec,
        scroll_depth=context.scroll_depth,
        clicked_product_image=context.clicked_product_image,
        session_length_mins=context.session_length_mins,
        products_viewed_count=context.products_viewed_count,
    )
    session = session_inputs(live, encodings, catalog)
    blocked = {current, *(by_name[n] for n in context.in_cart)}
    eligible = np.flatnonzero(
        catalog.in_stock & ~np.isin(catalog.product_ids, sorted(blocked))
    ).astype(np.int64)
    candidates = CandidateInputs(
        category_code=encodings.category.encode(catalog.categories[eligible]),
        price=catalog.prices[eligible],
        product_index=eligible,
    )
    sequence = None
    if feature_set == "sequence":
        sequence = sequence_inputs(
            live, catalog, SequenceTables.build(catalog, tables), len(eligible)
        )
    rows = build_features(session, candidates, tables, feature_set, sequence)
    scores = predict(booster, rows)
    ranked = pd.DataFrame(
        {
            "product_id": catalog.product_ids[eligible],
            "name": catalog.names[eligible],
            "subcategory": catalog.subcategories[eligible],
            "score": scores,
        }
    )
    return ranked.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
