"""Scenario mixes, request builders and product ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadtest import workload
from loadtest.products import CatalogError, default_product_ids, load_product_ids
from loadtest.workload import KINDS, Mix
from reco.v1 import recommender_pb2 as pb

PRODUCTS = default_product_ids()


def test_mix_parses_weights_and_bare_kinds() -> None:
    mix = Mix.parse("score=8, recommend-session=1,track")
    assert mix.weights == {"score": 8.0, "recommend-session": 1.0, "track": 1.0}
    assert str(mix) == "score=8,recommend-session=1,track=1"
    assert mix.uses_sessions
    assert not Mix.parse("score").uses_sessions


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scroe=1", "unknown request kind 'scroe'"),
        ("score=abc", "weight of 'score' must be a number, got 'abc'"),
        ("score=0", "weight of 'score' must be > 0"),
        ("score=1,score=2", "'score' appears twice"),
        (" , ", "no request kind"),
    ],
)
def test_bad_mixes_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mix.parse(text)


def test_mix_draws_in_proportion() -> None:
    kinds = Mix.parse("score=3,track=1").draw(np.random.default_rng(0), 40_000)
    share = np.mean(kinds == KINDS.index("track"))
    assert share == pytest.approx(0.25, abs=0.01)
    assert set(np.unique(kinds)) == {KINDS.index("score"), KINDS.index("track")}


def test_score_request_has_the_asked_candidates_distinct_when_possible() -> None:
    rng = np.random.default_rng(1)
    request = workload.score_request(rng, PRODUCTS, 100, "s1")
    ids = [c.product_id for c in request.candidates]
    assert len(ids) == 100
    assert len(set(ids)) == 100
    assert set(ids) <= set(PRODUCTS)
    assert request.context.session_id == "s1"
    assert 0.0 <= request.context.scroll_depth <= 1.0
    assert len(request.context.previous_product_ids) <= 3
    # More candidates than products: repeats are allowed rather than failing.
    assert len(workload.score_request(rng, PRODUCTS[:5], 12, "s1").candidates) == 12


def test_bad_score_request_has_an_empty_product_id() -> None:
    request = workload.bad_score_request(np.random.default_rng(2), PRODUCTS, 10, "s")
    assert request.candidates[-1].product_id == ""
    assert all(c.product_id for c in request.candidates[:-1])


def test_track_and_recommend_requests() -> None:
    rng = np.random.default_rng(3)
    event = workload.track_request(rng, PRODUCTS, "s9", "e1", pb.EVENT_TYPE_ADD_TO_CART).event
    assert (event.session_id, event.event_id, event.type) == ("s9", "e1", pb.EVENT_TYPE_ADD_TO_CART)
    assert event.product_id in PRODUCTS
    types = {workload.track_request(rng, PRODUCTS, "s", "e").event.type for _ in range(200)}
    assert types == {pb.EVENT_TYPE_VIEW, pb.EVENT_TYPE_ADD_TO_CART}
    assert workload.recommend_request("s9").k == 3


def test_zero_candidates_is_rejected() -> None:
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        workload.candidate_ids(np.random.default_rng(0), PRODUCTS, 0)


def test_product_ids_from_a_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("product_id,name,price\nP1,a,1\nP2,b,2\nP1,a,1\n,blank,3\n")
    assert load_product_ids(catalog) == ("P1", "P2")


def test_missing_catalog_falls_back_unless_required(tmp_path: Path) -> None:
    assert load_product_ids(tmp_path / "none.csv") == PRODUCTS
    assert PRODUCTS[0] == "PROD0001"
    assert PRODUCTS[-1] == "PROD0200"
    with pytest.raises(CatalogError, match="does not exist"):
        load_product_ids(tmp_path / "none.csv", required=True)


def test_catalog_without_product_id_column_names_it(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,name\nP1,a\n")
    with pytest.raises(CatalogError, match=r"no 'product_id' column \(columns: id, name\)"):
        load_product_ids(catalog)
