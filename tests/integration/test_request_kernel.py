"""The request kernel compiled into model.so: rows bit-identical to the numpy builder, scores
identical to LightGBM in every mode and kernel, errors that name the argument, the build gate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compiler.request_build
import compiler.request_forest
from compiler.build import BuildError, BuildOptions, compile_library
from compiler.synthetic import SyntheticSpec, synthetic_rows
from reco import (
    FEATURE_NAMES,
    FEATURE_SETS,
    KERNELS,
    LIBRARY_FILE,
    MAX_HISTORY,
    MODEL_FILE,
    MODES,
    SERVING_SLOT,
    SESSION_FEATURES,
    SESSION_INPUTS,
    CandidateInputs,
    Catalog,
    Encodings,
    Histories,
    NativeLibrary,
    ProductTables,
    RequestKernel,
    RequestKernelError,
    SequenceInputs,
    SequenceTables,
    SessionContext,
    SessionInputs,
    SparseAffinity,
    ViewHistory,
    Vocabulary,
    build_features,
    choose_kernel,
    cpu_flags,
    pack_history,
    session_inputs,
    shared_session_rows,
)
from tests.integration.compiler_support import SMALL, build, make_bundle, shared_cache
from training.catalog import catalog_from_frame

F32 = np.float32
# The serving feature set, small enough to build in seconds; up to 30 leaves a tree, so trees
# are unbalanced and some have more than 16 leaves.
SPEC = SyntheticSpec(n_rows=3000, n_trees=40, max_depth=6, num_leaves=30, sample_rows=1000)
TRICKY = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-36, -1e-36, 1e-40, -1.0, 1e39, 0.5]
# Values at the session formulas' own thresholds, and float32 neighbours of some.
EDGES = [60.0, 0.6, 100.0, 30.0, 3.0, 10.0, 0.3, 300.0, 1.0, 2.0, 59.99999, 0.6000001]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = make_bundle(tmp_path_factory.mktemp("request-kernel"), SPEC)
    build(bundle, shared_cache(tmp_path_factory))
    return bundle


@pytest.fixture(scope="module")
def library(bundle: Path) -> Path:
    return bundle / LIBRARY_FILE


@pytest.fixture(scope="module")
def booster(bundle: Path) -> lgb.Booster:
    return lgb.Booster(model_file=str(bundle / MODEL_FILE))


def _kernel(library: Path, tables: dict[str, np.ndarray], kernel: str = "auto") -> RequestKernel:
    return RequestKernel(
        library, feature_names=FEATURE_NAMES, kernel=kernel, cpu_flags=cpu_flags(), **tables
    )


def _random_tables(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    codes = rng.integers(-1, 5, n + 1).astype(F32)
    codes[-1] = np.nan
    strengths = np.array([0.0, 0.0, -0.0, 0.25, 0.75, 1.0, np.nan], dtype=F32)  # ties, NaN
    dense = rng.choice(strengths, (n, n))
    # Sometimes cut at a top k, as training does: lookups past the cut must read 0 in C too.
    top_k = None if rng.random() < 0.5 else int(rng.integers(1, max(n, 2)))
    src, dst = np.nonzero(np.ones((n, n), dtype=bool))
    affinity = SparseAffinity.from_pairs(n, src, dst, dense[src, dst], top_k)
    return {
        "category_codes": codes,
        "prices": np.append(rng.lognormal(3, 1, n), np.nan).astype(F32),
        "popularity": np.append(rng.random(n), np.nan).astype(F32),
        "affinity": affinity,
    }


def _reference_rows(
    inputs: list[float],
    current: int,
    previous: list[int],
    candidates: np.ndarray,
    tables: dict[str, np.ndarray],
    codes: np.ndarray | None,
    prices: np.ndarray | None,
) -> np.ndarray:
    """training.features.build_features for the same request, inputs rounded to float32 as
    session_inputs rounds them."""
    with np.errstate(all="ignore"):
        rounded = np.array(inputs, dtype=F32).astype(np.float64).tolist()
        session = SessionInputs(
            *rounded, current_index=current, previous_index=np.array(previous, dtype=np.int64)
        )
        index = candidates.astype(np.int64)
        given = CandidateInputs(
            tables["category_codes"][index] if codes is None else codes,
            tables["prices"][index] if prices is None else prices,
            index,
        )
        return build_features(
            session, given, ProductTables(tables["affinity"], tables["popularity"])
        )


def _value() -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from(TRICKY + EDGES),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-5, 400, width=32),
    )


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    n_products = draw(st.integers(0, 9))
    tables_seed = draw(st.integers(0, 2**32 - 1))
    index = st.integers(-1, n_products - 1)
    inputs = [draw(_value()) for _ in SESSION_INPUTS]
    # The numpy builder divides by minutes + 1 in Python floats: -1 would raise, and validation
    # keeps minutes >= 0 anyway.
    minutes = SESSION_INPUTS.index("session_length_mins")
    with np.errstate(over="ignore"):
        is_minus_one = np.float64(inputs[minutes]).astype(F32) == -1.0
    if is_minus_one:
        inputs[minutes] = 0.0
    n = draw(st.integers(0, 40))
    candidates = np.array(
        draw(st.lists(index, min_size=n, max_size=n)),
        dtype=draw(st.sampled_from([np.int32, np.int64])),
    )
    given = st.one_of(st.none(), st.lists(_value(), min_size=n, max_size=n))
    codes, prices = draw(given), draw(given)
    with np.errstate(over="ignore"):  # values beyond float32 round to inf, as in the server
        codes, prices = (None if v is None else np.array(v, dtype=F32) for v in (codes, prices))
    return {
        "tables": _random_tables(np.random.default_rng(tables_seed), n_products),
        "inputs": inputs,
        "current": draw(index),
        "previous": [draw(index) for _ in range(3)],
        "candidates": candidates,
        "codes": codes,
        "prices": prices,
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_native_rows_and_scores_match_the_numpy_builder_bit_for_bit(
    library: Path, request: dict[str, Any]
) -> None:
    r = request
    with np.errstate(all="ignore"):
        expected = _reference_rows(
            r["inputs"],
            r["current"],
            r["previous"],
            r["candidates"],
            r["tables"],
            r["codes"],
            r["prices"],
        )
    kernel = _kernel(library, r["tables"])
    args = (r["inputs"], r["current"], r["previous"], r["candidates"], r["codes"], r["prices"])
    rows = kernel.rows(*args)
    assert rows.shape == expected.shape and rows.dtype == F32
    assert rows.tobytes() == expected.tobytes()  # bit for bit, NaN payloads and -0.0 included
    flat = NativeLibrary(library).predict_unchecked(expected) if len(expected) else np.empty(0)
    for name in kernel.usable_kernels:
        for mode in MODES:
            scores = _kernel(library, r["tables"], name).score(*args, mode=mode)
            assert scores.tobytes() == flat.tobytes(), (name, mode)


# The inputs each session formula combines (training.features.session_feature_columns).
FORMULA_INPUTS = [
    ("time_on_page_sec", "scroll_depth"),
    ("session_length_mins", "products_viewed_count"),
    ("current_price", "products_in_cart"),
    ("category_code", "current_price"),  # same_category and price_ratio on the candidate side
]


@pytest.mark.parametrize("pair", FORMULA_INPUTS, ids="+".join)
def test_every_formula_at_its_edges_matches_the_numpy_builder(
    library: Path, pair: tuple[str, str]
) -> None:
    tables = _random_tables(np.random.default_rng(1), 6)
    kernel = _kernel(library, tables)
    candidates = np.array([-1, 0, 1, 2, 3, 4, 5], dtype=np.int64)
    codes = np.array([np.nan, -1, 0, 1, 2, 3, 60], dtype=F32)
    prices = np.array([1e-36, 0.5, 30, 100, np.inf, np.nan, 3], dtype=F32)
    base = [2.0, 50.0, 1.0, 0.0, 1.0, 45.0, 0.5, 1.0, 5.0, 2.0]
    values = TRICKY + EDGES + [np.nextafter(F32(v), F32(-np.inf)).item() for v in EDGES]
    first, second = (SESSION_INPUTS.index(name) for name in pair)
    for a in values:
        for b in values:
            inputs = list(base)
            inputs[first], inputs[second] = a, b
            with np.errstate(over="ignore"):
                if np.float64(inputs[8]).astype(F32) == -1.0:  # see requests()
                    continue
            for overrides in ((None, None), (codes, prices)):
                expected = _reference_rows(inputs, 1, [2, -1, 3], candidates, tables, *overrides)
                actual = kernel.rows(inputs, 1, [2, -1, 3], candidates, *overrides)
                assert actual.tobytes() == expected.tobytes(), (pair, a, b)


def _catalog(n: int, rng: np.random.Generator) -> Catalog:
    return catalog_from_frame(
        pd.DataFrame(
            {
                "product_id": [f"P{i:03d}" for i in range(n)],
                "name": [f"product {i}" for i in range(n)],
                "category": rng.choice(["Home", "Sports", "Toys", "Books"], n),
                "subcategory": ["x"] * n,
                "price": rng.lognormal(3, 1, n),
                "popularity": rng.random(n),
                "in_stock": [True] * n,
            }
        )
    )


def test_a_live_context_scores_through_session_inputs_like_the_server_builds_it(
    library: Path, booster: lgb.Booster
) -> None:
    """The phase-2 plug: session_inputs's numeric fields go in as they are."""
    rng = np.random.default_rng(3)
    catalog = _catalog(60, rng)
    encodings = Encodings(
        category=Vocabulary(("Books", "Home", "Sports")),  # Toys is unseen: UNKNOWN_CODE
        device_type=Vocabulary(("Desktop", "Mobile")),
        traffic_source=Vocabulary(("Direct", "Email")),
    )
    codes = np.append(encodings.category.encode(catalog.categories), np.nan).astype(F32)
    tables = {
        "category_codes": codes,
        "prices": np.append(catalog.prices, np.nan).astype(F32),
        "popularity": np.append(catalog.popularity, np.nan).astype(F32),
        "affinity": _random_tables(rng, 60)["affinity"],
    }
    kernel = _kernel(library, tables)
    product_tables = ProductTables(tables["affinity"], tables["popularity"])
    worst = 0.0
    for k in range(60):
        session = session_inputs(
            SessionContext(
                current_product_id=f"P{k:03d}" if k % 5 else "UNKNOWN",
                current_category=None if k % 3 else "Toys",
                current_price=None if k % 4 else float(rng.lognormal(3, 1)),
                previous_product_ids=tuple([f"P{(k * 7 + j) % 70:03d}" for j in range(k % 4)]),
                products_in_cart=None if k % 7 == 0 else float(k % 4),
                device_type=["Mobile", "Tablet", None][k % 3],
                traffic_source=["Email", None, "Paid"][k % 3],
                time_on_page_sec=float(rng.integers(0, 400)),
                scroll_depth=None if k % 6 == 0 else float(rng.random()),
                clicked_product_image=[True, False, None][k % 3],
                session_length_mins=float(rng.integers(0, 40)),
                products_viewed_count=float(rng.integers(0, 9)),
            ),
            encodings,
            catalog,
        )
        candidates = rng.integers(0, 60, 1 + 17 * (k % 4)).astype(np.int64)
        inputs = [getattr(session, name) for name in SESSION_INPUTS]
        index = (session.current_index, session.previous_index.tolist())
        expected = build_features(
            session,
            CandidateInputs(codes[candidates], tables["prices"][candidates], candidates),
            product_tables,
        )
        assert kernel.rows(inputs, *index, candidates).tobytes() == expected.tobytes()
        scores = kernel.score(inputs, *index, candidates)
        worst = max(worst, float(np.max(np.abs(scores - booster.predict(expected)))))
    assert worst == 0.0


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_folded_scores_equal_lightgbm_on_random_rows_with_nans(
    library: Path, booster: lgb.Booster, kernel: str
) -> None:
    probe = RequestKernel.for_rows(library, FEATURE_NAMES, cpu_flags())
    if kernel not in probe.usable_kernels:
        pytest.fail(f"this CPU cannot run the {kernel} kernel: CI must cover both")
    rows = synthetic_rows(replace(SPEC, nan_fraction=0.2), 3000, np.random.default_rng(11))
    requests_of_53 = shared_session_rows(rows, len(SESSION_FEATURES), 53)
    for batch in (rows, requests_of_53):
        expected = booster.predict(batch)
        for mode in MODES:
            actual = probe.predict_rows(batch, mode, kernel)
            assert np.max(np.abs(actual - expected)) == 0.0, mode
    assert probe.check_parity(rows, booster.predict(rows)) == 0.0


def test_the_build_records_the_kernel_and_its_parity(bundle: Path) -> None:
    section = json.loads((bundle / "manifest.json").read_text())["compiler"]
    assert section["request_kernel"] == {"built": True, "reason": None}
    records = section["backends"]["compiled"]["request_kernel"]
    assert set(records) == set(KERNELS)
    for record in records.values():
        assert record["status"] == "ok" and record["max_abs_diff"] == 0.0
        assert record["tolerance"] == 0.0 and record["groups"]["shared_session"]["rows"] > 0


def test_bad_arguments_are_refused_naming_them(library: Path) -> None:
    tables = _random_tables(np.random.default_rng(0), 5)
    kernel = _kernel(library, tables)
    session = [1.0] * len(SESSION_INPUTS)
    ok = np.array([0, 4, -1], dtype=np.int64)
    with pytest.raises(
        ValueError, match=r"candidates\[1\]: index 5 is outside the catalog \(-1..4\)"
    ):
        kernel.score(session, 0, (1, 2, 3), np.array([0, 5], dtype=np.int32))
    with pytest.raises(ValueError, match=r"candidates\[0\]: index -2"):
        kernel.score(session, 0, (1, 2, 3), np.array([-2], dtype=np.int64))
    with pytest.raises(ValueError, match="current_index 9, previous_indices"):
        kernel.score(session, 9, (1, 2, 3), ok)
    with pytest.raises(ValueError, match="previous_indices"):
        kernel.rows(session, 0, (1, -7, 3), ok)
    with pytest.raises(ValueError, match="int32 or int64, got float64"):
        kernel.score(session, 0, (1, 2, 3), ok.astype(np.float64))
    with pytest.raises(ValueError, match="1-D"):
        kernel.score(session, 0, (1, 2, 3), [0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contiguous"):
        kernel.score(session, 0, (1, 2, 3), np.arange(6, dtype=np.int64)[::2])
    with pytest.raises(
        ValueError, match=r"prices must be None or a contiguous float32 array of shape \(3,\)"
    ):
        kernel.score(session, 0, (1, 2, 3), ok, prices=np.ones(2, dtype=F32))
    with pytest.raises(ValueError, match="the affinity table has 4 products"):
        _kernel(library, {**tables, "affinity": SparseAffinity.empty(4)})
    with pytest.raises(ValueError, match="rows must be"):
        kernel.predict_rows(np.zeros((2, 5), dtype=F32))
    assert kernel.score(session, -1, (-1, -1, -1), np.empty(0, dtype=np.int64)).shape == (0,)


def test_kernel_choice_follows_the_cpu_and_the_library() -> None:
    assert choose_kernel("auto", ("portable", "avx2"), {"sse2", "avx2"}) == "avx2"
    assert choose_kernel("auto", ("portable", "avx2"), {"sse2"}) == "portable"
    assert choose_kernel("auto", ("portable", "avx2"), None) == "portable"
    assert choose_kernel("auto", ("portable",), {"avx2"}) == "portable"
    with pytest.raises(RequestKernelError, match="avx2"):
        choose_kernel("avx2", ("portable",), {"avx2"})
    with pytest.raises(ValueError, match="'avx512'"):
        choose_kernel("avx512", ("portable",), None)


def test_a_library_for_other_features_has_no_request_kernel(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    bundle, _ = make_bundle(tmp_path_factory.mktemp("other-features"), SMALL)
    build(bundle, shared_cache(tmp_path_factory))
    section = json.loads((bundle / "manifest.json").read_text())["compiler"]
    assert section["request_kernel"]["built"] is False
    assert "candidate" in section["request_kernel"]["reason"]
    assert "request_kernel" not in section["backends"]["compiled"]
    with pytest.raises(RequestKernelError, match="has no request kernel"):
        RequestKernel.for_rows(bundle / LIBRARY_FILE, SMALL.feature_names)


def test_a_library_built_for_other_features_is_refused(library: Path) -> None:
    with pytest.raises(RequestKernelError, match="the model expects"):
        RequestKernel.for_rows(library, [*FEATURE_NAMES[:-1], "something_else"])


# Deliberate bugs, one per kernel: the build's parity gate must refuse each library.
BUGS = {
    "portable": ("right_bits = 2 * right_bits + right;", "right_bits = 2 * right_bits;"),
    "avx2": (
        "_mm256_loadu_ps(RK_SESSION_THRESHOLD + i), _CMP_LE_OQ);",
        "_mm256_loadu_ps(RK_SESSION_THRESHOLD + i), _CMP_LT_OQ);",
    ),
}


@pytest.mark.parametrize("kernel", list(BUGS))
def test_the_build_refuses_a_kernel_that_differs_from_lightgbm(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    source = compiler.request_forest.KERNEL_SOURCE.read_text()
    correct, broken = BUGS[kernel]
    assert source.count(correct) == 1
    broken_source = tmp_path / "request_kernel.c"
    broken_source.write_text(source.replace(correct, broken))
    monkeypatch.setattr(compiler.request_build, "KERNEL_SOURCE", broken_source)
    copy = tmp_path / "bundle"
    copy.mkdir()
    for name in ("manifest.json", MODEL_FILE, "train_sample.npy"):
        (copy / name).write_bytes((bundle / name).read_bytes())
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.pop("compiler")
    manifest["files"] = {
        k: v for k, v in manifest["files"].items() if k in (MODEL_FILE, "train_sample.npy")
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BuildError, match=f"{kernel} kernel: request_kernel parity failed"):
        build(copy, None)
    assert not (copy / LIBRARY_FILE).exists()


@pytest.mark.parametrize("codegen", ["tl2cgen", "flat"])
def test_large_forests_fold_on_the_heap_and_tl2cgen_libraries_carry_the_kernel(
    bundle: Path,
    booster: lgb.Booster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    codegen: str,
) -> None:
    monkeypatch.setattr(compiler.request_forest, "FOLD_STACK_BYTES", 0)
    library = compile_library(
        bundle / MODEL_FILE, tmp_path, BuildOptions(), None, "gcc", codegen, FEATURE_NAMES
    )
    assert "#define RK_FOLD_ON_STACK 0" in (tmp_path / "src" / "request_forest.h").read_text()
    rows = synthetic_rows(replace(SPEC, nan_fraction=0.2), 500, np.random.default_rng(5))
    kernel = RequestKernel.for_rows(library, FEATURE_NAMES, cpu_flags())
    assert kernel.check_parity(rows, booster.predict(rows)) == 0.0


# ---- the sequence feature set: the nine history columns built in C (reco.history_columns) ----

SEQUENCE_NAMES = FEATURE_SETS["sequence"]
SEQUENCE_SPEC = replace(SPEC, feature_names=SEQUENCE_NAMES)


@pytest.fixture(scope="module")
def synthetic_sequence_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = make_bundle(tmp_path_factory.mktemp("request-kernel-sequence"), SEQUENCE_SPEC)
    build(bundle, shared_cache(tmp_path_factory))
    return bundle


def _random_sequence_tables(
    rng: np.random.Generator, tables: dict[str, np.ndarray]
) -> SequenceTables:
    """Subcategory and category codes (few, so that candidates share them), the product
    affinity of `tables` and a subcategory affinity with ties and zeros, padded as
    SequenceTables.build pads them."""
    n = len(tables["popularity"]) - 1
    n_sub, n_cat = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    strengths = np.array([0.0, 0.125, 0.5, 1.0 / 3.0, 0.7])
    subcategory_affinity = rng.choice(strengths, (n_sub + 1, n_sub + 1))
    subcategory_affinity[-1, :] = subcategory_affinity[:, -1] = 0.0
    return SequenceTables(
        subcategory=np.append(rng.integers(0, n_sub, n), n_sub).astype(np.int64),
        category=np.append(rng.integers(0, n_cat, n), n_cat).astype(np.int64),
        n_subcategories=n_sub,
        n_categories=n_cat,
        affinity=tables["affinity"],
        subcategory_affinity=subcategory_affinity,
    )


def _product_id(index: int) -> str:
    return f"P{index}" if index >= 0 else f"unknown-{-index}"


@st.composite
def sequence_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request of requests() plus a view history of 0..MAX_HISTORY distinct products (ids
    outside the catalog among them, views repeating), and a landing product maybe unknown."""
    request = draw(requests())
    n_products = len(request["tables"]["popularity"]) - 1
    view = st.integers(-3, n_products - 1)  # negative: an id the catalog does not hold
    views = draw(st.lists(view, max_size=MAX_HISTORY + 16))
    history = ViewHistory.of_views([_product_id(v) for v in views])
    if draw(st.booleans()):  # a history folded before the catalog changed: landing unknown
        history = replace(history, landing_product_id=_product_id(draw(view)))
    seed = draw(st.integers(0, 2**32 - 1))
    sequence = _random_sequence_tables(np.random.default_rng(seed), request["tables"])
    return {**request, "history": history, "sequence": sequence}


def _sequence_kernel(library: Path, r: dict[str, Any], kernel: str = "auto") -> RequestKernel:
    return RequestKernel(
        library,
        feature_names=SEQUENCE_NAMES,
        kernel=kernel,
        cpu_flags=cpu_flags(),
        sequence_tables=r["sequence"],
        **r["tables"],
    )


def _sequence_reference_rows(r: dict[str, Any], catalog_index: dict[str, int]) -> np.ndarray:
    """build_features(..., "sequence") for the request: the candidate part as
    _reference_rows builds it, the history through reco.Histories as serving builds it."""
    with np.errstate(all="ignore"):
        rounded = np.array(r["inputs"], dtype=F32).astype(np.float64).tolist()
        session = SessionInputs(
            *rounded,
            current_index=r["current"],
            previous_index=np.array(r["previous"], dtype=np.int64),
        )
        index = r["candidates"].astype(np.int64)
        tables = r["tables"]
        given = CandidateInputs(
            tables["category_codes"][index] if r["codes"] is None else r["codes"],
            tables["prices"][index] if r["prices"] is None else r["prices"],
            index,
        )
        n = len(index)
        sequence = SequenceInputs(
            history=Histories.of([r["history"]], catalog_index),
            row=np.zeros(n, dtype=np.int64),
            slot=np.full(n, SERVING_SLOT),
            tables=r["sequence"],
        )
        return build_features(
            session,
            given,
            ProductTables(tables["affinity"], tables["popularity"]),
            "sequence",
            sequence,
        )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=sequence_requests())
def test_native_sequence_rows_and_scores_match_the_numpy_builder_bit_for_bit(
    synthetic_sequence_bundle: Path, request: dict[str, Any]
) -> None:
    r = request
    library = synthetic_sequence_bundle / LIBRARY_FILE
    n_products = len(r["tables"]["popularity"]) - 1
    catalog_index = {_product_id(i): i for i in range(n_products)}
    expected = _sequence_reference_rows(r, catalog_index)
    history = pack_history(r["history"], catalog_index)
    kernel = _sequence_kernel(library, r)
    args = (r["inputs"], r["current"], r["previous"], r["candidates"], r["codes"], r["prices"])
    rows = kernel.rows(*args, history=history)
    assert rows.shape == expected.shape == (len(r["candidates"]), len(SEQUENCE_NAMES))
    assert rows.tobytes() == expected.tobytes()  # bit for bit, NaN shares included
    if not r["history"].product_ids:  # nothing viewed: every share is NaN
        shares = rows[:, len(FEATURE_NAMES) : len(FEATURE_NAMES) + 5]
        assert np.isnan(shares).all()
    flat = NativeLibrary(library).predict_unchecked(expected) if len(expected) else np.empty(0)
    for name in kernel.usable_kernels:
        for mode in MODES:
            scores = _sequence_kernel(library, r, name).score(*args, mode=mode, history=history)
            assert scores.tobytes() == flat.tobytes(), (name, mode)


def test_sequence_scores_equal_lightgbm_on_rows_built_natively(
    synthetic_sequence_bundle: Path,
) -> None:
    """Real-looking sessions over a 40-product catalog: the kernel's own rows, scored by it,
    against LightGBM on the same rows (max abs diff 0.0)."""
    booster = lgb.Booster(model_file=str(synthetic_sequence_bundle / MODEL_FILE))
    rng = np.random.default_rng(5)
    tables = _random_tables(rng, 40)
    r: dict[str, Any] = {"tables": tables, "sequence": _random_sequence_tables(rng, tables)}
    catalog_index = {_product_id(i): i for i in range(40)}
    kernel = _sequence_kernel(synthetic_sequence_bundle / LIBRARY_FILE, r)
    worst = 0.0
    for k in range(40):
        views = [_product_id(int(v)) for v in rng.integers(-2, 40, int(rng.integers(0, 70)))]
        history = pack_history(ViewHistory.of_views(views), catalog_index)
        inputs = [float(v) for v in rng.lognormal(1, 1, len(SESSION_INPUTS))]
        candidates = np.arange(-1, 40, dtype=np.int64)[: 1 + k]
        codes = np.append(np.float32(2.0), tables["category_codes"][candidates[1:]])
        prices = np.append(np.float32(9.5), tables["prices"][candidates[1:]])
        args = (inputs, int(rng.integers(-1, 40)), [int(v) for v in rng.integers(-1, 40, 3)])
        rows = kernel.rows(*args, candidates, codes, prices, history=history)
        scores = kernel.score(*args, candidates, codes, prices, history=history)
        worst = max(worst, float(np.max(np.abs(scores - booster.predict(rows)))))
    assert worst == 0.0


def test_a_sequence_kernel_refuses_a_missing_or_bad_history(
    synthetic_sequence_bundle: Path,
) -> None:
    rng = np.random.default_rng(0)
    tables = _random_tables(rng, 5)
    r = {"tables": tables, "sequence": _random_sequence_tables(rng, tables)}
    kernel = _sequence_kernel(synthetic_sequence_bundle / LIBRARY_FILE, r)
    session = [1.0] * len(SESSION_INPUTS)
    ok = np.array([0, 4, -1], dtype=np.int64)
    catalog_index = {_product_id(i): i for i in range(5)}
    with pytest.raises(ValueError, match="history must be the session's views packed"):
        kernel.score(session, 0, (1, 2, 3), ok)
    with pytest.raises(ValueError, match="history must be the session's views packed"):
        kernel.score(session, 0, (1, 2, 3), ok, history=b"\0" * 40)
    out_of_range = pack_history(ViewHistory.of_views(["P1", "P2"]), {"P1": 1, "P2": 7})
    with pytest.raises(ValueError, match="the history's product indices outside the catalog"):
        kernel.score(session, 0, (1, 2, 3), ok, history=out_of_range)
    with pytest.raises(ValueError, match="sequence_tables"):
        RequestKernel(
            synthetic_sequence_bundle / LIBRARY_FILE, feature_names=SEQUENCE_NAMES, **tables
        )
    bad_codes = replace(r["sequence"], subcategory=np.full(6, 99, dtype=np.int64))
    with pytest.raises(ValueError, match="subcategory codes must lie in"):
        _sequence_kernel(synthetic_sequence_bundle / LIBRARY_FILE, {**r, "sequence": bad_codes})
    history = pack_history(ViewHistory.of_views(["P1"]), catalog_index)
    assert kernel.score(session, 0, (1, 2, 3), ok, history=history).shape == (3,)


def test_the_sequence_build_records_the_kernel_and_its_parity(
    synthetic_sequence_bundle: Path,
) -> None:
    section = json.loads((synthetic_sequence_bundle / "manifest.json").read_text())["compiler"]
    assert section["request_kernel"] == {"built": True, "reason": None}
    for record in section["backends"]["compiled"]["request_kernel"].values():
        assert record["status"] == "ok" and record["max_abs_diff"] == 0.0
    kernel = RequestKernel.for_rows(
        synthetic_sequence_bundle / LIBRARY_FILE, SEQUENCE_NAMES, cpu_flags()
    )
    assert kernel.sequence and kernel.feature_names == SEQUENCE_NAMES
