"""The native scoring path on a candidate bundle and on the default (sequence) bundle: rows
bit-identical to the numpy builder and scores identical to LightGBM over random sessions
(view histories of 0..64 products included) and candidates (NaNs, unknown ids, overrides),
Score and Recommend answering as the python path does, the id table agreeing with the
catalog's dict, and every way the server falls back to (or refuses) the python path."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reco._loader
import server.core.model
from reco import (
    MAX_HISTORY,
    MODEL_FILE,
    Catalog,
    Manifest,
    RequestKernelError,
    SessionContext,
    ViewHistory,
    bundle_request_kernel,
    read_manifest,
)
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.errors import Unavailable
from server.core.model import LoadedModel, load_model
from server.core.native import check_against_builder, native_rows, native_scores
from server.core.recommend import Recommender, RecommendLimits, RecommendQuery
from server.core.registry import ModelRegistry
from server.core.requests import Candidates, ScoreQuery, ScoreResult
from server.core.scoring import Limits, Scorer, candidate_indices, resolve_candidates
from tests.integration.servers import ServerProcess, running
from tests.integration.test_server_settings import start

SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Inputs at and around the session formulas' thresholds, and the awkward floats.
NUMBERS = [np.nan, 0.0, -0.0, 1e-40, 0.3, 0.6, 0.6000001, 3.0, 10.0, 30.0, 60.0, 59.99999,
           100.0, 300.0, 1e39, math.inf]  # fmt: skip


@pytest.fixture(scope="module", params=["candidate", "sequence"])
def served(request: pytest.FixtureRequest, bundle: Path, sequence_bundle: Path) -> Path:
    """A candidate bundle, and the default bundle of `make model` (the sequence set)."""
    return bundle if request.param == "candidate" else sequence_bundle


@pytest.fixture(scope="module")
def native(served: Path) -> LoadedModel:
    model = load_model(served, scoring_path="native")
    assert model.scoring_path == "native" and model.kernel is not None
    return model


@pytest.fixture(scope="module")
def python(served: Path) -> LoadedModel:
    model = load_model(served, scoring_path="python")
    assert model.scoring_path == "python" and model.kernel is None
    return model


@pytest.fixture(scope="module")
def booster(served: Path) -> lgb.Booster:
    return lgb.Booster(model_file=str(served / MODEL_FILE))


def numbers(low: float = 0.0, high: float = 500.0) -> st.SearchStrategy[float | None]:
    return st.none() | st.sampled_from(NUMBERS) | st.floats(low, high, width=32)


@st.composite
def contexts(draw: st.DrawFn, ids: list[str], vocabularies: Any) -> SessionContext:
    products = st.sampled_from([*ids, "", "unknown-1", "ÜNKNOWN"])
    words = st.sampled_from

    def text(values: tuple[str, ...]) -> st.SearchStrategy[str | None]:
        return st.none() | words([*values, "unseen", ""])

    return SessionContext(
        current_product_id=draw(products),
        current_category=draw(text(vocabularies.category.values)),
        current_price=draw(numbers()),
        previous_product_ids=tuple(draw(st.lists(products, max_size=4))),
        products_in_cart=draw(st.none() | st.integers(0, 12)),
        device_type=draw(text(vocabularies.device_type.values)),
        traffic_source=draw(text(vocabularies.traffic_source.values)),
        time_on_page_sec=draw(numbers()),
        scroll_depth=draw(numbers(0.0, 1.0)),
        clicked_product_image=draw(st.none() | st.booleans()),
        session_length_mins=draw(numbers(0.0, 60.0)),
        products_viewed_count=draw(st.none() | st.integers(0, 40)),
        view_history=draw(st.none() | histories(ids)),
    )


def histories(ids: list[str]) -> st.SearchStrategy[ViewHistory]:
    """Tracked histories of 0..MAX_HISTORY products (beyond it the lightest is dropped), ids
    outside the catalog among them."""
    views = st.lists(st.sampled_from([*ids, "unknown-1", "ÜNKNOWN"]), max_size=MAX_HISTORY + 8)
    return views.map(ViewHistory.of_views)


@st.composite
def candidates(draw: st.DrawFn, ids: list[str], categories: tuple[str, ...]) -> Candidates:
    """Catalog and unknown ids, some with a given category (known or unseen) and price (NaN
    included: such an unknown product cannot be scored)."""
    picked = draw(st.lists(st.sampled_from([*ids, "unknown-a", "unknown-b", "ünknown"]),
                           min_size=1, max_size=70))  # fmt: skip
    given = st.dictionaries(st.integers(0, len(picked) - 1), st.sampled_from([*categories, "?"]))
    prices = st.dictionaries(st.integers(0, len(picked) - 1),
                             st.floats(0.5, 1e4, width=32) | st.just(math.nan))  # fmt: skip
    return Candidates(picked, draw(given), draw(prices))


def test_the_default_bundle_scores_natively_and_matches_its_builder(native: LoadedModel) -> None:
    assert check_against_builder(native) <= 1e-6


@SLOW
@given(data=st.data())
def test_native_rows_are_the_numpy_builders_and_scores_lightgbms(
    native: LoadedModel, booster: lgb.Booster, data: st.DataObject
) -> None:
    ids = native.catalog.product_ids.tolist()
    context = data.draw(contexts(ids, native.encodings))
    resolved = resolve_candidates(
        native, data.draw(candidates(ids, native.encodings.category.values)), skip_unknown=True
    )
    if not len(resolved.index):
        return
    expected = native.rows(context, resolved.inputs(native))  # the numpy builder
    rows = native_rows(native, context, resolved.index, resolved.codes, resolved.prices)
    assert rows.view(np.uint32).tolist() == expected.view(np.uint32).tolist()  # bit for bit
    scores = native_scores(native, context, resolved.index, resolved.codes, resolved.prices)
    assert np.array_equal(scores, booster.predict(expected, num_threads=1))  # max abs diff 0.0


@SLOW
@given(data=st.data())
def test_score_answers_as_the_python_path(
    native: LoadedModel, python: LoadedModel, data: st.DataObject
) -> None:
    ids = native.catalog.product_ids.tolist()
    context = data.draw(contexts(ids, native.encodings))
    query = ScoreQuery(context, data.draw(candidates(ids, native.encodings.category.values)),
                       top_k=data.draw(st.integers(0, 5)), skip_unknown=True)  # fmt: skip
    answers: list[ScoreResult | type[Exception]] = []
    for model in (native, python):
        registry = ModelRegistry()
        registry.install("", model)
        scorer = Scorer(registry, Limits(), sessions=None)  # type: ignore[arg-type]
        try:
            answers.append(scorer.score_on(model, "", query, context))
        except Exception as exc:  # the same validation error on both paths
            answers.append(type(exc))
    fast, reference = answers
    if isinstance(fast, type) or isinstance(reference, type):
        assert fast == reference
        return
    assert fast.unknown_product_ids == reference.unknown_product_ids
    assert np.array_equal(np.isnan(fast.scores), np.isnan(reference.scores))
    np.testing.assert_allclose(fast.scores, reference.scores, rtol=0, atol=1e-6)
    if np.array_equal(fast.scores, reference.scores, equal_nan=True):
        assert fast.ranked.tolist() == reference.ranked.tolist()


def test_recommend_answers_as_the_python_path(native: LoadedModel, python: LoadedModel) -> None:
    ids = native.catalog.product_ids.tolist()
    rng = np.random.default_rng(3)
    for n in range(30):
        context = SessionContext(
            session_id=f"s{n}",
            current_product_id=ids[n],
            previous_product_ids=tuple(rng.choice(ids, 2).tolist()),
            device_type="Desktop",
            time_on_page_sec=float(rng.uniform(5, 300)),
            scroll_depth=float(rng.uniform(0, 1)),
            products_in_cart=int(rng.integers(0, 3)),
            session_length_mins=float(rng.uniform(0, 30)),
            products_viewed_count=int(rng.integers(1, 10)),
            cart_product_ids=(ids[n + 1],),
            view_history=ViewHistory.of_views(rng.choice(ids, n * 2).tolist()) if n % 2 else None,
        )
        query = RecommendQuery(context.session_id, k=5, min_score=0.0, max_per_category=n % 3)
        answers = []
        for model in (native, python):
            registry = ModelRegistry()
            registry.install("", model)
            recommender = Recommender(registry, None, RecommendLimits())  # type: ignore[arg-type]
            answers.append(recommender.recommend_on(model, "", query, context))
        fast, reference = answers
        assert fast.candidates_scored == reference.candidates_scored
        assert [i.product_id for i in fast.items] == [i.product_id for i in reference.items]
        np.testing.assert_allclose([i.score for i in fast.items],
                                   [i.score for i in reference.items], rtol=0, atol=1e-6)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(picked=st.lists(st.sampled_from(["PROD0001", "PROD0200", "PROD9999", "", "ü", "a\x00b"])
                       | st.text(max_size=12), max_size=40))  # fmt: skip
def test_the_native_id_table_agrees_with_the_catalogs_dict(
    native: LoadedModel, picked: list[str]
) -> None:
    index = native.catalog.index
    expected = [index.get(p, -1) for p in picked]
    assert native.kernel is not None
    found = native.kernel.lookup(picked)
    if any("\x00" in p for p in picked):
        assert found is None  # the caller falls back to the dict
    else:
        assert found is not None
        assert found[0].tolist() == expected and found[1] == expected.count(-1)
    looked_up, unknown = candidate_indices(native, picked)
    assert looked_up.tolist() == expected and unknown == expected.count(-1)


def test_auto_falls_back_with_one_log_line_when_the_kernel_cannot_serve(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object) -> None:
        raise RequestKernelError("the build made no request kernel: a test's reason")

    monkeypatch.setattr(reco._loader, "bundle_request_kernel", refuse)
    with caplog.at_level(logging.WARNING, logger="server.core.model"):
        model = load_model(bundle, scoring_path="auto")
    assert model.scoring_path == "python"
    lines = [r.getMessage() for r in caplog.records if r.name == "server.core.model"]
    assert len(lines) == 1 and "python path" in lines[0] and "a test's reason" in lines[0]
    with pytest.raises(Unavailable, match=r"--scoring-path native: .*a test's reason"):
        load_model(bundle, scoring_path="native")


def test_a_kernel_that_disagrees_with_the_builder_is_not_served(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disagree(model: LoadedModel) -> float:
        raise RequestKernelError("native rows differ from the numpy builder's (a test)")

    monkeypatch.setattr(server.core.model, "check_against_builder", disagree)
    with caplog.at_level(logging.WARNING, logger="server.core.model"):
        assert load_model(bundle, scoring_path="auto").scoring_path == "python"
    assert "differ from the numpy builder" in caplog.text
    with pytest.raises(Unavailable, match="--scoring-path native"):
        load_model(bundle, scoring_path="native")


def test_the_onnx_backend_scores_on_the_python_path(bundle: Path) -> None:
    assert load_model(bundle, "onnx", scoring_path="auto").scoring_path == "python"
    with pytest.raises(Unavailable, match=r"--scoring-path native: .*backend is onnx"):
        load_model(bundle, "onnx", scoring_path="native")


def test_a_bundle_built_without_the_kernel_is_refused_saying_why(native: LoadedModel,
                                                                 bundle: Path) -> None:  # fmt: skip
    """A feature set the kernel does not cover (e.g. `session`) is built without it, and the
    manifest says why; the kernel is then never opened."""
    manifest = read_manifest(bundle)
    compiler = {**manifest["compiler"], "request_kernel": {"built": False, "reason": "a reason"}}
    parsed = Manifest.parse({**manifest, "compiler": compiler})
    with pytest.raises(RequestKernelError, match="made no request kernel: a reason"):
        bundle_request_kernel(Path("/nonexistent/model.so"), parsed, native.encodings,
                              native.catalog, native.tables, None)  # fmt: skip


def test_a_model_with_another_kernel_fails_the_load_check(native: LoadedModel) -> None:
    """A kernel bound to other prices than the catalog's builds other rows: refused at load."""
    assert native.kernel is not None
    other = replace(native, product_prices=native.product_prices * 2)
    with pytest.raises(RequestKernelError, match="differ from the numpy builder"):
        check_against_builder(other)


def test_native_asked_for_on_a_bundle_it_cannot_serve_is_a_startup_error(bundle: Path) -> None:
    result = start("--bundle", str(bundle), "--port", "0", "--metrics-port", "-1",
                   "--backend", "onnx", "--scoring-path", "native",
                   "--admin-address", "none", "--log-level", "ERROR")  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--scoring-path native" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and str(bundle.parent) not in lines[0]


def test_the_default_server_serves_natively_and_answers_as_the_python_path(
    server: ServerProcess, logs: Path, bundle: Path
) -> None:
    """End to end: the default server scores on the native path; one started with
    --scoring-path python gives the same ranked answer to the same request."""
    assert "native scoring path" in server.log()
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    request = pb.ScoreRequest(
        context=pb.SessionContext(current_product_id=ids[3], previous_product_ids=ids[4:6],
                                  device_type="Mobile", scroll_depth=0.5),
        candidates=[pb.Candidate(product_id=p) for p in ids[:80]]
        + [pb.Candidate(product_id="new-product", category="Electronics", price=19.5)],
        top_k=7,
    )  # fmt: skip
    native = pb_grpc.RecommenderStub(server.channel()).Score(request)
    with running(bundle, "--scoring-path", "python", log_dir=logs) as reference_server:
        assert "python scoring path" in reference_server.log()
        reference = pb_grpc.RecommenderStub(reference_server.channel()).Score(request)
    np.testing.assert_allclose(native.scores, reference.scores, rtol=0, atol=1e-6)
    assert len(native.scores) == 81
    assert [r.product_id for r in native.ranked] == [r.product_id for r in reference.ranked]
