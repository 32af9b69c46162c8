"""Retrieval above --catalog-limit: the sources, the business rules, the budget, no pool scan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reco import SessionContext, ViewHistory
from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel
from server.core.recommend import Recommender, RecommendLimits, RecommendQuery
from server.core.registry import ModelRegistry
from server.core.retrieval import RetrievalMix, session_anchors
from tests.unit.server.fakes import fake_model

PRODUCTS = 400
SUBCATEGORIES = ("Camping", "Running", "Laptops", "Phones", "Decor")
CATEGORY = {"Camping": "Sports", "Running": "Sports", "Laptops": "Electronics",
            "Phones": "Electronics", "Decor": "Electronics"}  # fmt: skip


def _frame() -> pd.DataFrame:
    ids = [f"P{i:04d}" for i in range(PRODUCTS)]
    rng = np.random.default_rng(3)
    subcategory = [SUBCATEGORIES[i % len(SUBCATEGORIES)] for i in range(PRODUCTS)]
    return pd.DataFrame({
        "product_id": ids,
        "name": [f"Product {i}" for i in range(PRODUCTS)],
        "category": [CATEGORY[s] for s in subcategory],
        "subcategory": subcategory,
        "price": rng.uniform(5, 95, PRODUCTS).round(2),
        "popularity": rng.uniform(0, 1, PRODUCTS).round(4),
        "in_stock": [i % 13 != 0 for i in range(PRODUCTS)],
    })  # fmt: skip


def _affinity() -> pd.DataFrame:
    # P0001 (Running) goes with ten Camping products; Running and Camping relate.
    related = [f"P{i:04d}" for i in range(0, 50, 5)]
    return pd.DataFrame({"product_id": ["P0001"] * len(related), "related_product_id": related,
                         "strength": np.linspace(0.9, 0.5, len(related))})  # fmt: skip


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return fake_model(_frame(), _affinity())


@pytest.fixture(scope="module")
def bare() -> LoadedModel:
    """The same catalog without any affinity pair."""
    return fake_model(_frame())


def recommender(model: LoadedModel, size: int, mix: RetrievalMix | None = None) -> Recommender:
    registry = ModelRegistry()
    registry.install("A", model)
    return Recommender(registry, MemoryStore(), RecommendLimits(0, size, mix or RetrievalMix()))


CONTEXT = SessionContext(session_id="s", current_product_id="P0001",
                         previous_product_ids=("P0003",), cart_product_ids=("P0006",))  # fmt: skip


def _ids(model: LoadedModel, picked: np.ndarray) -> list[str]:
    return [str(model.catalog.product_ids[i]) for i in picked.tolist()]


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 450), excluded=st.lists(st.integers(0, PRODUCTS - 1), max_size=30))
def test_retrieval_keeps_the_rules_and_fills_its_budget(
    model: LoadedModel, size: int, excluded: list[int]
) -> None:
    picked = recommender(model, size).candidates(model, CONTEXT, excluded)
    blocked = {1, 6, *excluded}  # on screen, in the cart, excluded
    eligible = {i for i in range(PRODUCTS) if model.catalog.in_stock[i]} - blocked
    assert len(set(picked.tolist())) == len(picked) == min(size, len(eligible))
    assert set(picked.tolist()) <= eligible


def test_the_neighbours_come_first_strongest_first(model: LoadedModel) -> None:
    # The budget's share of neighbours (2 of 20, plus one spare per blocked product) reads the
    # four strongest; P0000 is out of stock (every 13th), the global list fills the rest.
    core = recommender(model, 20, RetrievalMix(0.1, 0.0, 0.9))
    picked = set(_ids(model, core.candidates(model, CONTEXT, [])))
    neighbours = {f"P{i:04d}" for i in range(5, 50, 5)}
    assert picked & neighbours == {"P0005", "P0010", "P0015"}


def test_the_intent_subcategories_bring_their_popular_products(model: LoadedModel) -> None:
    core = recommender(model, 20, RetrievalMix(0.0, 1.0, 0.0))
    context = SessionContext(session_id="s", current_product_id="P0002")  # Laptops, no pairs
    picked = core.candidates(model, context, [])
    catalog = model.catalog
    laptops = [i for i in np.argsort(-catalog.popularity, kind="stable").tolist()
               if catalog.subcategories[i] == "Laptops" and catalog.in_stock[i] and i != 2]  # fmt: skip
    assert picked.tolist() == sorted(laptops[:20])


def test_a_bundle_without_affinity_retrieves_by_popularity(bare: LoadedModel) -> None:
    core = recommender(bare, 150)
    assert "no affinity" in core.plan(bare)
    result = core.recommend_on(bare, "", RecommendQuery(session_id="s", k=10, min_score=0.0),
                               CONTEXT)  # fmt: skip
    assert result.candidates_scored == 150 and len(result.items) == 10
    assert not {"P0001", "P0006"} & {item.product_id for item in result.items}


def test_an_empty_in_stock_pool_answers_with_nothing() -> None:
    frame = _frame().assign(in_stock=False)
    empty = fake_model(frame, _affinity())
    result = recommender(empty, 100).recommend_on(
        empty, "", RecommendQuery(session_id="s", k=5, min_score=0.0), CONTEXT
    )
    assert result.items == [] and result.candidates_scored == 0


def test_retrieval_covers_the_exhaustive_top_when_its_budget_holds_the_pool(
    model: LoadedModel,
) -> None:
    query = RecommendQuery(session_id="s", k=10, min_score=0.0)
    everything = Recommender(ModelRegistry(), MemoryStore(), RecommendLimits(PRODUCTS, 1))
    best = {i.product_id for i in everything.recommend_on(model, "", query, CONTEXT).items}
    retrieved = recommender(model, PRODUCTS).recommend_on(model, "", query, CONTEXT)
    assert {i.product_id for i in retrieved.items} == best


def test_the_anchors_weigh_recency_the_cart_and_the_history(model: LoadedModel) -> None:
    history = ViewHistory.of_views(["P0009", "P0003", "P0001"])
    context = SessionContext(current_product_id="P0001", previous_product_ids=("P0003", "GONE"),
                             cart_product_ids=("P0006",), view_history=history)  # fmt: skip
    anchors, weights = session_anchors(context, model.catalog.index)
    assert anchors.tolist()[:4] == [1, 3, -1, 6]
    assert weights.tolist()[:4] == [1.0, 0.5, 0.25, 0.5]
    assert anchors.tolist()[4:] == [9, 3, 1]
    assert weights[4:].sum() == pytest.approx(1.0)


def test_shares_that_do_not_sum_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        RetrievalMix(0.5, 0.5, 0.5)
