"""The flat generator's tables: padding, operators, float32 thresholds, eligibility, choice."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import treelite

from compiler.build import BuildOptions
from compiler.codegen_choice import choose_codegen
from compiler.flatgen import (
    MAX_FEATURES,
    NotEligibleError,
    float32_at_or_below,
    float32_below,
    read_forest,
    render_c,
)
from tests.flat_models import EVERY_OPERATOR, Tree, build_model, edge_rows, walk_margins, zeroed

INF = np.float32(np.inf)
FLT_MAX = float(np.finfo(np.float32).max)


def _float32_neighbours(value: float) -> list[np.float32]:
    # Values beyond the float32 range round to, or step up to, inf: a valid input too.
    with np.errstate(over="ignore"):
        centre = np.float32(value)
        found = [centre, INF, -INF, np.float32(0.0), np.float32(FLT_MAX), np.float32(-FLT_MAX)]
        up = down = centre
        for _ in range(3):
            up, down = np.nextafter(up, INF), np.nextafter(down, -INF)
            found += [up, down]
    return found


@pytest.mark.parametrize(
    "value",
    [0.5, 0.1, -0.1, 1e-35, -1e-35, 1e-45, 1e300, -1e300, FLT_MAX, FLT_MAX * (1 + 1e-9), 0.0],
)
def test_float32_thresholds_split_float32_inputs_like_the_double(value: float) -> None:
    at_or_below, below = float32_at_or_below(value), float32_below(value)
    assert at_or_below.dtype == np.float32 and below.dtype == np.float32
    for x in _float32_neighbours(value):
        assert (float(x) <= value) == (x <= at_or_below), (x, value)
        assert (float(x) < value) == (x <= below), (x, value)


def test_infinite_thresholds() -> None:
    assert float32_at_or_below(float("inf")) == INF
    assert float32_below(float("inf")) == np.float32(FLT_MAX)
    assert float32_at_or_below(float("-inf")) == -INF


def test_a_shallow_leaf_fills_its_subtree_behind_always_left_padding() -> None:
    tree: Tree = (0, "<=", 1.0, True, 1.5, (1, "<=", 2.0, False, 2.5, 3.5))
    forest = read_forest(build_model([tree], n_features=2))
    assert forest.depth == 2
    # Slot 1 is padding under the left leaf: column 0 against +inf always goes left.
    assert forest.feature[0].tolist() == [0, 0, 2 + 1]  # node 2 defaults right: NaN-kept copy
    assert forest.threshold[0].tolist() == [1.0, np.inf, 2.0]
    assert forest.leaf[0].tolist() == [1.5, 1.5, 2.5, 3.5]


def test_greater_than_swaps_the_children_and_keeps_nan_on_its_side() -> None:
    # x > 5 goes left to -1 and NaN goes left (default_left): as x <= 5 the children swap, and
    # NaN must still reach -1, now on the right, so the node reads the NaN-kept copy.
    forest = read_forest(build_model([(0, ">", 5.0, True, -1.0, 1.0)], n_features=1))
    assert forest.feature[0].tolist() == [1]
    assert forest.threshold[0].tolist() == [5.0]
    assert forest.leaf[0].tolist() == [1.0, -1.0]
    # x >= 0.1 is not (x < 0.1), i.e. not (x <= the largest float32 below 0.1).
    forest = read_forest(build_model([(0, ">=", 0.1, False, -1.0, 1.0)], n_features=1))
    assert forest.feature[0].tolist() == [0]
    assert forest.threshold[0][0] == float32_below(0.1) < np.float32(0.1)


@pytest.mark.parametrize(
    "postprocessor,alpha,base",
    [("sigmoid", 1.0, 0.0), ("sigmoid", 0.375, 0.25), ("identity", 1, 0)],
)
def test_tables_reproduce_treelite_for_every_operator(
    postprocessor: str, alpha: float, base: float
) -> None:
    model = build_model(EVERY_OPERATOR, 3, postprocessor, alpha, base)
    forest = read_forest(model)
    assert (forest.postprocessor, forest.sigmoid_alpha, forest.base_score) == (
        postprocessor,
        alpha,
        base,
    )
    rows = edge_rows(EVERY_OPERATOR, 3, np.random.default_rng(0))
    # GTIL is Treelite's reference interpreter (float64 input for a float64 model).
    expected = treelite.gtil.predict(model, zeroed(rows).astype(np.float64), pred_margin=True)
    np.testing.assert_allclose(walk_margins(forest, rows), expected.ravel(), rtol=0, atol=1e-12)


def test_tables_reproduce_a_lightgbm_model_with_missing_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(0.0, 1.0, (1500, 6)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.isnan(X[:, 2]) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "max_depth": 5, "num_leaves": 12, "verbose": -1},
        lgb.Dataset(X, y),
        num_boost_round=15,
    )
    booster.save_model(str(tmp_path / "model.txt"))
    forest = read_forest(treelite.frontend.load_lightgbm_model(tmp_path / "model.txt"))
    rows = rng.normal(0.0, 1.0, (3000, 6)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    np.testing.assert_allclose(
        walk_margins(forest, rows), booster.predict(rows, raw_score=True), rtol=0, atol=1e-12
    )


def _chain(depth: int) -> Tree:
    tree: Tree = 1.0
    for level in range(depth):
        tree = (0, "<=", float(level), True, float(level), tree)
    return tree


@pytest.mark.parametrize(
    "model,reason",
    [
        (lambda: build_model([(0, "==", 1.0, True, 1.0, 2.0)], 1), "'==' test"),
        (lambda: build_model([(0, ">=", -np.inf, True, 1.0, 2.0)], 1), "'x >= -inf' test"),
        (lambda: build_model([_chain(11)], 1), "tree 0 has depth 11, over the limit of 10"),
        (lambda: build_model([1.0, _chain(3)] * 3, 1, "softmax", num_class=3), "single-output"),
        (lambda: build_model([1.0], 1, "exponential"), "postprocessor 'exponential'"),
        (lambda: build_model([1.0], MAX_FEATURES + 1), "2049 features, over the limit"),
    ],
)
def test_models_the_flat_generator_cannot_take_are_refused_by_reason(
    model: object, reason: str
) -> None:
    with pytest.raises(NotEligibleError, match=reason):
        read_forest(model())  # type: ignore[operator]


def test_depth_ten_is_eligible_and_padded_to_a_full_tree() -> None:
    forest = read_forest(build_model([_chain(10), 0.5], 1))
    assert forest.depth == 10 and forest.feature.shape == (2, 1023)
    assert forest.leaf[1].tolist() == [0.5] * 1024  # a lone leaf padded all the way down


def test_categorical_splits_are_refused(tmp_path: Path) -> None:
    model_file = _lightgbm_model(tmp_path, categorical=True)
    with pytest.raises(NotEligibleError, match="categorical splits"):
        read_forest(treelite.frontend.load_lightgbm_model(model_file))


def _lightgbm_model(tmp_path: Path, categorical: bool) -> Path:
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.integers(0, 12, 800), rng.normal(0, 1, 800)]).astype(np.float32)
    y = (np.isin(X[:, 0], [1, 4, 7]) ^ (X[:, 1] > 0.5)).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1, "min_data_per_group": 5},
        lgb.Dataset(X, y, categorical_feature=[0] if categorical else "auto"),
        num_boost_round=5,
    )
    path = tmp_path / f"model-{categorical}.txt"
    booster.save_model(str(path))
    return path


def test_auto_chooses_flat_when_eligible_and_tl2cgen_with_the_reason_otherwise(
    tmp_path: Path,
) -> None:
    numerical = _lightgbm_model(tmp_path, categorical=False)
    categorical = _lightgbm_model(tmp_path, categorical=True)
    choice = choose_codegen(numerical, "auto")
    assert choice.used == "flat" and choice.reason.startswith("eligible: 5 trees of depth <= ")
    choice = choose_codegen(categorical, "auto")
    assert choice.used == "tl2cgen" and "categorical splits" in choice.reason
    assert choice.to_manifest() == {
        "used": "tl2cgen",
        "requested": "auto",
        "reason": choice.reason,
    }
    assert choose_codegen(numerical, "tl2cgen").used == "tl2cgen"
    assert choose_codegen(numerical, "flat").reason == "requested"
    with pytest.raises(NotEligibleError, match="--codegen flat: tree 0 has categorical"):
        choose_codegen(categorical, "flat")
    with pytest.raises(ValueError, match="'gpu'"):
        choose_codegen(numerical, "gpu")


def test_rendered_c_pads_the_tree_count_for_single_row_steps() -> None:
    forest = read_forest(build_model(EVERY_OPERATOR, 3, sigmoid_alpha=-0.5))
    source = render_c(forest, block_rows=4)
    assert "#define N_TREES 7\n" in source and "#define N_TREES_PADDED 8\n" in source
    assert "#define BLOCK 4 " in source and "exp(-(-0.5) * (margin))" in source
    assert "int32_t reco_predict_dense(const float* X, int64_t n_rows, int32_t n_cols" in source
    with pytest.raises(ValueError, match="block_rows must be one of"):
        render_c(forest, block_rows=5)


def test_build_options_refuse_an_unknown_generator_or_block_width() -> None:
    with pytest.raises(ValueError, match="codegen must be one of"):
        BuildOptions(codegen="gpu")
    with pytest.raises(ValueError, match=r"block_rows must be one of \(4, 8, 16\), got 5"):
        BuildOptions(block_rows=5)
    assert BuildOptions().flags()["codegen"] == "auto"  # recorded, and part of the cache key
