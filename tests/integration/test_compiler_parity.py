"""Compiled (both generators) and ONNX predictions match LightGBM's on many random models and
awkward rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from compiler.synthetic import SyntheticSpec, synthetic_rows
from reco import BackendError, load_backend, read_manifest
from tests.integration.compiler_support import (
    SMALL,
    build,
    make_bundle,
    shared_cache,
    threshold_rows_from_dump,
)


def _random_spec(seed: int) -> SyntheticSpec:
    rng = np.random.default_rng(1000 + seed)
    n_features = int(rng.integers(3, 15))
    depth = int(rng.integers(1, 8))
    columns = rng.permutation(n_features)
    return SyntheticSpec(
        feature_names=tuple(f"x{i}" for i in range(n_features)),
        n_rows=1500,
        n_trees=int(rng.integers(5, 40)),
        max_depth=depth,
        num_leaves=min(2**depth, 31),
        categorical=tuple(int(c) for c in columns[: rng.integers(0, 2)]),
        n_categories=int(rng.integers(3, 50)),
        constant=tuple(int(c) for c in columns[2 : 2 + rng.integers(0, 2)]),
        nan_fraction=float(rng.uniform(0.0, 0.3)),
        sample_rows=800,
        seed=seed,
    )


CASES: dict[str, SyntheticSpec] = {
    "production shape": SyntheticSpec(),
    "production shape, not quantized": SyntheticSpec(),
    "stumps": replace(SMALL, max_depth=1, num_leaves=2, n_trees=40, seed=1),
    "deep": replace(SMALL, max_depth=8, num_leaves=64, n_trees=20, seed=2),
    "categorical": replace(SMALL, categorical=(1, 4), n_categories=40, seed=3),
    "heavy nan and constant columns": replace(SMALL, nan_fraction=0.3, constant=(2, 5), seed=4),
    "nan read as zero": replace(SMALL, extra_params={"use_missing": False}, seed=5),
    "sigmoid alpha 0.4": replace(SMALL, extra_params={"sigmoid": 0.4}, seed=6),
    # 24 leaves in trees up to 9 deep: the flat tables pad each to 511 tests.
    "unbalanced": replace(SMALL, max_depth=9, num_leaves=24, seed=8),
    "too deep for flat": replace(
        SMALL, max_depth=-1, num_leaves=63, n_trees=10, seed=9, extra_params={"min_data_in_leaf": 3}
    ),
    **{f"random {seed}": _random_spec(seed) for seed in range(4)},
}
# onnxmltools (1.16) converts a model trained with sigmoid=0.4 as if sigmoid were 1: the
# build's parity check must catch that and leave model.onnx out.
ONNX_REJECTED = {"sigmoid alpha 0.4"}
# Build options other than the defaults, per case.
BUILD_CHANGES: dict[str, dict[str, object]] = {
    "production shape, not quantized": {"quantize": False},
    "deep": {"annotate": False},
}
# Every case is built by each generator: "auto" (flat when eligible) and "tl2cgen". The TL2cgen
# option cases need no flat twin.
TL2CGEN_ONLY = {"production shape, not quantized"}
BUILDS = [
    (name, codegen)
    for name in CASES
    for codegen in ("auto", "tl2cgen")
    if not (codegen == "auto" and name in TL2CGEN_ONLY)
]
# Why auto must fall back to TL2cgen, for the cases it must.
NOT_FLAT = {"categorical": "categorical splits", "too deep for flat": "over the limit of 10"}


def _expected_codegen(name: str, spec: SyntheticSpec, codegen: str) -> tuple[str, str]:
    if codegen == "tl2cgen":
        return "tl2cgen", "requested"
    if name in NOT_FLAT:
        return "tl2cgen", NOT_FLAT[name]
    if spec.categorical:
        return "tl2cgen", "categorical splits"
    return "flat", "eligible: "


@pytest.fixture(scope="module", params=BUILDS, ids=[f"{n} [{c}]" for n, c in BUILDS])
def case(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, SyntheticSpec, Path, lgb.Booster]:
    name, codegen = request.param
    spec = CASES[name]
    bundle, booster = make_bundle(tmp_path_factory.mktemp("parity"), spec)
    changes = {"codegen": codegen, **BUILD_CHANGES.get(name, {})}
    build(bundle, shared_cache(tmp_path_factory), **changes)
    return name, spec, bundle, booster


def _fresh_rows_with_nan(spec: SyntheticSpec, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = synthetic_rows(spec, 2000, rng)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    for j in range(rows.shape[1]):  # every column missing in turn
        rows[j * 10 : j * 10 + 10, j] = np.nan
    return rows


def _max_diff(expected: np.ndarray, actual: np.ndarray) -> float:
    assert actual.dtype == np.float64 and actual.shape == expected.shape
    return float(np.max(np.abs(actual - expected)))


def test_build_records_parity_per_backend(
    case: tuple[str, SyntheticSpec, Path, lgb.Booster],
) -> None:
    name, spec, bundle, _ = case
    section = read_manifest(bundle)["compiler"]
    used, reason = _expected_codegen(name, spec, section["codegen"]["requested"])
    assert section["codegen"]["used"] == used and reason in section["codegen"]["reason"]
    backends = section["backends"]
    assert backends["compiled"]["status"] == "ok"
    assert backends["compiled"]["max_abs_diff"] <= 1e-6
    assert backends["compiled"]["rows_checked"] > 1000
    if name in ONNX_REJECTED:
        assert backends["onnx"]["status"] == "rejected"
        assert "onnx parity failed" in backends["onnx"]["reason"]
        assert not (bundle / "model.onnx").exists()
    else:
        assert backends["onnx"]["status"] == "ok"
        assert backends["onnx"]["max_abs_diff"] <= 1e-4


def test_compiled_matches_lightgbm_on_fresh_rows_with_nan(
    case: tuple[str, SyntheticSpec, Path, lgb.Booster],
) -> None:
    _, spec, bundle, booster = case
    rows = _fresh_rows_with_nan(spec, seed=spec.seed + 100)
    expected = booster.predict(rows)
    assert _max_diff(expected, load_backend(bundle, "compiled").predict(rows)) <= 1e-6


def test_onnx_matches_lightgbm_within_its_tolerance(
    case: tuple[str, SyntheticSpec, Path, lgb.Booster],
) -> None:
    name, spec, bundle, booster = case
    if name in ONNX_REJECTED:
        with pytest.raises(BackendError, match="onnx parity failed"):
            load_backend(bundle, "onnx")
        return
    rows = _fresh_rows_with_nan(spec, seed=spec.seed + 200)
    assert _max_diff(booster.predict(rows), load_backend(bundle, "onnx").predict(rows)) <= 1e-4


def test_compiled_matches_lightgbm_on_split_thresholds(
    case: tuple[str, SyntheticSpec, Path, lgb.Booster],
) -> None:
    _, spec, bundle, booster = case
    base = synthetic_rows(spec, 50, np.random.default_rng(spec.seed + 300))
    rows = threshold_rows_from_dump(booster, base)
    expected = booster.predict(rows)
    assert _max_diff(expected, load_backend(bundle, "compiled").predict(rows)) <= 1e-6


def test_threshold_rows_include_values_exactly_on_a_threshold(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # LightGBM splits 0/1 and integer-coded columns at float32-representable thresholds such as
    # 1e-35f; the threshold rows must put inputs exactly there, not only next to them.
    spec = CASES["production shape"]
    _, booster = make_bundle(tmp_path_factory.mktemp("exact"), spec)
    base = synthetic_rows(spec, 10, np.random.default_rng(0))
    rows = threshold_rows_from_dump(booster, base)
    thresholds = {
        float(node["threshold"])
        for tree in booster.dump_model()["tree_info"]
        for node in _nodes(tree["tree_structure"])
    }
    exact = [value for value in np.unique(rows[np.isfinite(rows)]) if float(value) in thresholds]
    assert exact, "no row sits exactly on a split threshold"


def _nodes(node: dict) -> list[dict]:
    if "split_index" not in node:
        return []
    return [node, *_nodes(node["left_child"]), *_nodes(node["right_child"])]


def test_categorical_splits_in_every_backend(tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = CASES["categorical"]
    bundle, booster = make_bundle(tmp_path_factory.mktemp("categories"), spec)
    codegen = build(bundle, shared_cache(tmp_path_factory)).section["codegen"]
    assert codegen["used"] == "tl2cgen" and "categorical splits" in codegen["reason"]
    assert any(
        node["decision_type"] == "=="
        for tree in booster.dump_model()["tree_info"]
        for node in _nodes(tree["tree_structure"])
    ), "the model should contain categorical splits"
    base = synthetic_rows(spec, 60, np.random.default_rng(7))
    values = [np.nan, -1.0, *range(spec.n_categories + 3)]  # unknown code, NaN, every category
    rows = np.repeat(base, len(values), axis=0)
    for column in spec.categorical:
        rows[:, column] = np.tile(values, len(base))
    expected = booster.predict(rows)
    # onnxmltools turns LightGBM's category sets into BRANCH_EQ chains: it handles them.
    assert _max_diff(expected, load_backend(bundle, "compiled").predict(rows)) <= 1e-6
    assert _max_diff(expected, load_backend(bundle, "onnx").predict(rows)) <= 1e-4
