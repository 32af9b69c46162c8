"""The Recommend core: candidate generation for every limit, business rules, cold start, explain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.errors import InvalidArgument, Unavailable
from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel
from server.core.recommend import Recommender, RecommendLimits, RecommendQuery
from server.core.registry import ModelRegistry
from server.core.sessions import Event, EventType, SessionState
from tests.unit.server.fakes import fake_model

PRODUCTS = 12
OUT_OF_STOCK = {"P11"}


def _frame() -> pd.DataFrame:
    ids = [f"P{i:02d}" for i in range(PRODUCTS)]
    return pd.DataFrame(
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


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    affinity = pd.DataFrame(
        {"product_id": ["P00", "P00"], "related_product_id": ["P03", "P05"], "strength": [0.9, 0.8]}
    )
    return fake_model(_frame(), affinity)


def recommender(model: LoadedModel, limits: RecommendLimits) -> Recommender:
    registry = ModelRegistry()
    registry.install("A", model)
    return Recommender(registry, MemoryStore(), limits)


# The session views P00 with P01 in the cart; previous products include one the catalog lacks.
STATE = SessionState(
    session_id="s", current_product_id="P00", previous_product_ids=("P02", "GONE"), cart=("P01",)
).to_context()
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


def tracked(model: LoadedModel, limits: RecommendLimits | None = None) -> Recommender:
    """A recommender whose store holds session "s": viewing P00 with P01 in the cart."""
    core = recommender(model, limits or RecommendLimits())
    core.store.track(Event("e1", "s", EventType.VIEW, 1_000, product_id="P00"))
    core.store.track(Event("e2", "s", EventType.ADD_TO_CART, 2_000, product_id="P01"))
    return core


def ids_of(result: object) -> list[str]:
    return [item.product_id for item in result.items]  # type: ignore[attr-defined]


def test_rules_and_threshold_then_the_highest_scores_first(model: LoadedModel) -> None:
    # PriceBackend scores price / 100: P10 (0.80) and P09 (0.73) clear 0.7; P11 is out of stock.
    result = tracked(model).recommend(RecommendQuery(session_id="s", k=5))
    assert ids_of(result) == ["P10", "P09"]
    assert not result.cold_start and result.candidates_scored == ALLOWED
    assert [item.score for item in result.items] == pytest.approx([0.80, 0.73])


def test_exclude_product_ids_are_never_recommended(model: LoadedModel) -> None:
    core = tracked(model)
    query = RecommendQuery(session_id="s", k=3, min_score=0.0, exclude_product_ids=("P10", "NOPE"))
    result = core.recommend(query)
    assert ids_of(result) == ["P09", "P08", "P07"]
    assert result.candidates_scored == ALLOWED - 1  # an unknown id excludes nothing


def test_max_per_category_caps_each_category_in_rank_order(model: LoadedModel) -> None:
    core = tracked(model)
    capped = core.recommend(RecommendQuery(session_id="s", k=4, min_score=0.0, max_per_category=1))
    # By score: P10 (Electronics), P09 (Sports), P08 (Electronics), ...: one of each.
    assert ids_of(capped) == ["P10", "P09"]
    two = core.recommend(RecommendQuery(session_id="s", k=4, min_score=0.0, max_per_category=2))
    assert ids_of(two) == ["P10", "P09", "P08", "P07"]
    with pytest.raises(InvalidArgument, match="max_per_category must be >= 0"):
        core.recommend(RecommendQuery(session_id="s", max_per_category=-1))


def test_retrieval_over_a_catalog_above_the_limit_scores_only_the_related(
    model: LoadedModel,
) -> None:
    core = tracked(model, RecommendLimits(catalog_limit=4, retrieval_size=2))
    result = core.recommend(RecommendQuery(session_id="s", k=3, min_score=0.0))
    assert result.candidates_scored == 2
    # Affinity to P00 puts P03 and P05 first, whatever their scores.
    assert sorted(ids_of(result)) == ["P03", "P05"]


def test_an_unknown_session_gets_the_load_time_cold_start_without_a_model_call(
    model: LoadedModel,
) -> None:
    core = recommender(model, RecommendLimits())
    calls = list(model.backend.calls)  # type: ignore[attr-defined]
    result = core.recommend(RecommendQuery(session_id="nobody", k=3, exclude_product_ids=("P10",)))
    assert result.cold_start and result.candidates_scored == ALLOWED + 1
    # Popular in stock (P11 is not), excluded P10 dropped, ranked by the load-time scores.
    assert ids_of(result) == ["P09", "P08", "P07"]
    assert model.backend.calls == calls  # type: ignore[attr-defined]
    assert all(item.reasons and item.reasons[0].startswith("popular in") for item in result.items)


def test_the_in_stock_pool_is_read_not_written(model: LoadedModel) -> None:
    before = model.in_stock_pool.copy()
    tracked(model).recommend(RecommendQuery(session_id="s", exclude_product_ids=("P03",)))
    assert np.array_equal(model.in_stock_pool, before)
    assert "P11" not in {str(model.catalog.product_ids[i]) for i in before}


def test_explain_needs_an_explainer_and_then_explains_every_item() -> None:
    explained = fake_model(_frame(), explain=True)
    result = tracked(explained).recommend(RecommendQuery(session_id="s", k=2, explain=True))
    assert ids_of(result) == ["P10", "P09"]
    assert [c.feature for item in result.items for c in item.contributions] == ["rec_price"] * 2
    assert result.items[0].contributions[0].value == pytest.approx(80.0)
    plain = fake_model(_frame())
    with pytest.raises(InvalidArgument, match="explain needs a server started with --explain"):
        tracked(plain).recommend(RecommendQuery(session_id="s", explain=True))
    no_explain = tracked(explained).recommend(RecommendQuery(session_id="s", k=2))
    assert all(not item.contributions for item in no_explain.items)


def test_a_session_store_that_is_down_degrades_to_cold_start(model: LoadedModel) -> None:
    class DownStore(MemoryStore):
        def get(self, session_id: str, deadline: float | None = None) -> None:  # type: ignore[override]
            raise Unavailable("the session store is unreachable")

    registry = ModelRegistry()
    registry.install("A", model)
    result = Recommender(registry, DownStore(), RecommendLimits()).recommend(
        RecommendQuery(session_id="s")
    )
    assert result.cold_start


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (RecommendQuery(session_id=""), "session_id must not be empty"),
        (RecommendQuery(session_id="s", k=101), "k must be between 0 and 100"),
        (RecommendQuery(session_id="s", min_score=1.5), "min_score must be between 0 and 1"),
    ],
)
def test_bad_queries_name_the_field(
    model: LoadedModel, query: RecommendQuery, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        recommender(model, RecommendLimits()).recommend(query)
