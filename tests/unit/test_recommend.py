"""Recommend's candidate generation for every catalog limit and retrieval size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel
from server.core.recommend import Recommender, RecommendLimits, RecommendQuery
from server.core.registry import ModelRegistry
from server.core.sessions import Event, EventType, SessionState
from tests.unit.fakes import fake_model

PRODUCTS = 12
OUT_OF_STOCK = {"P11"}


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    ids = [f"P{i:02d}" for i in range(PRODUCTS)]
    frame = pd.DataFrame(
        {
            "product_id": ids,
            "name": [f"Product {i}" for i in range(PRODUCTS)],
            "category": ["Sports" if i % 2 else "Electronics" for i in range(PRODUCTS)],
            "subcategory": ["Camping" if i % 2 else "Computing" for i in range(PRODUCTS)],
            "price": [10.0 + 7 * i for i in range(PRODUCTS)],
            "popularity": [i / PRODUCTS for i in range(PRODUCTS)],
            "in_stock": [p not in OUT_OF_STOCK for p in ids],
        }
    )
    affinity = pd.DataFrame(
        {"product_id": ["P00", "P00"], "related_product_id": ["P03", "P05"], "strength": [0.9, 0.8]}
    )
    return fake_model(frame, affinity)


def recommender(model: LoadedModel, limits: RecommendLimits) -> Recommender:
    registry = ModelRegistry()
    registry.install("A", model)
    return Recommender(registry, MemoryStore(), limits)


# The session views P00 with P01 in the cart; previous products include one the catalog lacks.
STATE = SessionState(
    session_id="s", current_product_id="P00", previous_product_ids=("P02", "GONE"), cart=("P01",)
)
# In stock, not on screen, not in the cart.
ALLOWED = PRODUCTS - len(OUT_OF_STOCK) - 2


@settings(max_examples=60, deadline=None)
@given(catalog_limit=st.integers(0, 20), retrieval_size=st.integers(1, 400))
def test_any_limit_and_size_give_min_of_size_and_pool_allowed_candidates(
    model: LoadedModel, catalog_limit: int, retrieval_size: int
) -> None:
    limits = RecommendLimits(catalog_limit, retrieval_size)
    picked = recommender(model, limits).candidates(model, STATE, excluded=[])
    ids = {str(model.catalog.product_ids[i]) for i in picked.tolist()}
    expected = ALLOWED if catalog_limit >= ALLOWED else min(retrieval_size, ALLOWED)
    assert len(picked) == len(ids) == expected
    assert not ids & {"P00", "P01", *OUT_OF_STOCK}


def test_retrieval_prefers_the_products_related_to_the_session(model: LoadedModel) -> None:
    picked = recommender(model, RecommendLimits(catalog_limit=1, retrieval_size=2)).candidates(
        model, STATE, excluded=[]
    )
    assert sorted(str(model.catalog.product_ids[i]) for i in picked) == ["P03", "P05"]


@pytest.mark.parametrize(("catalog_limit", "retrieval_size"), [(0, 300), (5, 300), (8, 10), (1, 5)])
def test_recommend_answers_with_a_catalog_limit_below_the_retrieval_size(
    model: LoadedModel, catalog_limit: int, retrieval_size: int
) -> None:
    # --catalog-limit 10 with the default --retrieval-size 300 made every Recommend fail
    # (argpartition past the end of the pool).
    core = recommender(model, RecommendLimits(catalog_limit, retrieval_size))
    core.store.track(Event("e1", "s", EventType.VIEW, 1_000, product_id="P00"))
    core.store.track(Event("e2", "s", EventType.ADD_TO_CART, 2_000, product_id="P01"))
    result = core.recommend(RecommendQuery(session_id="s", k=3, min_score=0.0))
    assert not result.cold_start
    assert result.candidates_scored == min(retrieval_size, ALLOWED)
    assert len(result.items) == min(3, result.candidates_scored)
    assert np.all(np.diff([item.score for item in result.items]) <= 0)


@pytest.mark.parametrize(("catalog_limit", "retrieval_size"), [(-1, 10), (10, 0)])
def test_limits_that_cannot_mean_anything_are_refused(
    catalog_limit: int, retrieval_size: int
) -> None:
    with pytest.raises(ValueError, match="retrieval_size >= 1"):
        RecommendLimits(catalog_limit, retrieval_size)
