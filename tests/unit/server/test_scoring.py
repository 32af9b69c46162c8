"""Scoring logic: candidate resolution, unknown products, validation messages, deadlines."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from reco import FEATURE_NAMES, SessionContext
from server.core.errors import DeadlineExceeded, InvalidArgument, LimitExceeded, NotFound
from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel
from server.core.registry import ModelRegistry
from server.core.requests import Candidates, FeatureRows, ScoreQuery
from server.core.scoring import Limits, Scorer, context_features
from tests.unit.server.fakes import PRICE, PriceBackend, fake_model


@pytest.fixture
def model() -> LoadedModel:
    return fake_model(
        pd.DataFrame(
            {
                "product_id": ["P1", "P2", "P3"],
                "name": ["Tent", "Headlamp", "Laptop"],
                "category": ["Sports", "Sports", "Electronics"],
                "subcategory": ["Camping", "Camping", "Computing"],
                "price": [80.0, 20.0, 50.0],
                "popularity": [0.5, 0.3, 0.9],
                "in_stock": [True, True, True],
            }
        )
    )


@pytest.fixture
def scorer(model: LoadedModel) -> Scorer:
    registry = ModelRegistry()
    registry.install("A", model)
    return Scorer(registry, Limits(max_candidates=5), MemoryStore())


def query(*ids: str, **kw: object) -> ScoreQuery:
    candidates = kw.pop("candidates", Candidates(list(ids)))
    return ScoreQuery(context=kw.pop("context", SessionContext()), candidates=candidates, **kw)  # type: ignore[arg-type]


def test_one_backend_call_for_the_whole_batch_and_catalog_prices(
    scorer: Scorer, model: LoadedModel
) -> None:
    result = scorer.score(query("P1", "P2", "P3", min_score=0.0))
    assert result.scores.tolist() == pytest.approx([0.8, 0.2, 0.5])
    assert result.ranked.tolist() == [0, 2, 1]
    assert model.backend.calls == [3]  # type: ignore[attr-defined]
    assert (result.model_version, result.backend, result.variant) == ("v-test", "fake", "")


def test_default_threshold_comes_from_the_bundle(scorer: Scorer) -> None:
    assert scorer.score(query("P1", "P2", "P3")).ranked.tolist() == [0]  # only 0.8 >= 0.7


def test_overrides_and_unknown_products_with_category_and_price(scorer: Scorer) -> None:
    candidates = Candidates(["P2", "NEW"], categories={1: "Garden"}, prices={0: 90.0, 1: 10.0})
    result = scorer.score(query(candidates=candidates, min_score=0.0))
    assert result.scores.tolist() == pytest.approx([0.9, 0.1])


def test_unknown_product_without_category_or_price_is_not_found(scorer: Scorer) -> None:
    with pytest.raises(NotFound, match=r"candidates\[1\]\.product_id 'NOPE' is not in the catalog"):
        scorer.score(query("P1", "NOPE"))


def test_skip_unknown_scores_the_rest_and_lists_the_unknown(
    scorer: Scorer, model: LoadedModel
) -> None:
    result = scorer.score(query("NOPE", "P1", "GONE", skip_unknown=True, min_score=0.0))
    assert np.isnan(result.scores[0]) and np.isnan(result.scores[2])
    assert result.scores[1] == pytest.approx(0.8)
    assert result.ranked.tolist() == [1]
    assert result.unknown_product_ids == ["NOPE", "GONE"]
    assert model.backend.calls == [1]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("q", "message"),
    [
        (query("P1", candidates=Candidates(["P1", ""])), r"candidates\[1\]\.product_id must not be empty"),
        (query(candidates=Candidates(["P1"], prices={0: float("nan")})), r"candidates\[0\]\.price .* got NaN"),
        (query(candidates=Candidates(["P1"], prices={0: -2.0})), r"candidates\[0\]\.price .* got -2\.0"),
        (query("P1", context=SessionContext(scroll_depth=1.5)), r"context\.scroll_depth must be between 0 and 1, got 1\.5"),
        (query("P1", context=SessionContext(current_price=0.0)), r"context\.current_price .* got 0\.0"),
        (query("P1", context=SessionContext(products_in_cart=-1)), r"context\.products_in_cart .* got -1"),
        (query("P1", context=SessionContext(previous_product_ids=("a", "b", "c", "d"))), r"at most 3"),
        (query("P1", min_score=1.5), r"min_score must be between 0 and 1"),
        (query("P1", top_k=-1), r"top_k must be >= 0"),
        (query(), r"candidates must hold at least one candidate"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_and_value(scorer: Scorer, q: ScoreQuery, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        scorer.score(q)


def test_too_many_candidates_names_the_limit(scorer: Scorer) -> None:
    with pytest.raises(LimitExceeded, match="6 candidates, above the limit of 5"):
        scorer.score(query(*["P1"] * 6))


def test_feature_matrix_path_scores_rows_as_given(scorer: Scorer, model: LoadedModel) -> None:
    rows = np.zeros((2, len(FEATURE_NAMES)), dtype="<f4")
    rows[:, PRICE] = [30.0, 75.0]
    features = FeatureRows(rows.tobytes(), 2, len(FEATURE_NAMES))
    result = scorer.score(query(features=features, min_score=0.0))
    assert result.scores.tolist() == pytest.approx([0.3, 0.75])
    assert result.ranked.tolist() == [1, 0]
    with pytest.raises(InvalidArgument, match=r"features\.cols must equal the model's 27 features"):
        scorer.score(query(features=FeatureRows(rows.tobytes(), 2, 26)))
    with pytest.raises(InvalidArgument, match=r"features\.data"):
        scorer.score(query(features=FeatureRows(rows.tobytes()[:-4], 2, len(FEATURE_NAMES))))
    with pytest.raises(InvalidArgument, match="label each of the 2 feature rows"):
        scorer.score(query("P1", features=features))


def test_a_passed_deadline_abandons_before_the_model_call(
    scorer: Scorer, model: LoadedModel
) -> None:
    with pytest.raises(DeadlineExceeded):
        scorer.score(query("P1"), deadline=time.monotonic() - 0.001)
    assert model.backend.calls == []  # type: ignore[attr-defined]


def test_context_features_use_the_shared_builder(model: LoadedModel) -> None:
    from server.core.scoring import resolve_candidates

    resolved = resolve_candidates(model, Candidates(["P1", "P2"]), skip_unknown=False)
    rows = context_features(model, SessionContext(current_product_id="P3"), resolved.inputs(model))
    assert rows.shape == (2, len(FEATURE_NAMES))
    assert rows[:, FEATURE_NAMES.index("current_price")].tolist() == [50.0, 50.0]  # from catalog
    assert rows[:, FEATURE_NAMES.index("same_category")].tolist() == [0.0, 0.0]


def test_a_session_only_context_is_completed_from_the_tracked_session(model: LoadedModel) -> None:
    from server.core.sessions import Event, EventType

    registry = ModelRegistry()
    registry.install("A", model)
    store = MemoryStore()
    scorer = Scorer(registry, Limits(), store)
    backend: PriceBackend = model.backend  # type: ignore[assignment]
    session_only = query("P2", context=SessionContext(session_id="s1"), min_score=0.0)
    current_price = FEATURE_NAMES.index("current_price")
    scorer.score(session_only)
    assert backend.last_rows is not None and np.isnan(backend.last_rows[0, current_price])
    store.track(Event("e1", "s1", EventType.VIEW, 1_000, "P3"))
    scorer.score(session_only)
    assert backend.last_rows[0, current_price] == 50.0  # P3's catalog price, from the session
