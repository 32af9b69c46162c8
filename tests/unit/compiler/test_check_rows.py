"""Check rows: float32 threshold edges, routes to split nodes, NaN injection."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from compiler.check_rows import (
    THRESHOLD_EDGES,
    float32_at_or_below,
    nan_rows,
    parity_check_rows,
    threshold_rows,
)


def test_float32_at_or_below_is_the_largest_float32_not_above() -> None:
    for threshold in (1.5, 0.1, -0.1, 1.0000000180025095e-35, 3.5000000000000004, 1e300):
        value = float32_at_or_below(threshold)
        assert value.dtype == np.float32
        assert float(value) <= threshold
        with np.errstate(over="ignore"):  # float32 max steps up to inf
            assert float(np.nextafter(value, np.float32(np.inf))) > threshold
    assert float32_at_or_below(1.5) == np.float32(1.5)  # representable: exactly on it


def _stump_dump(decision_type: str, threshold: object, feature: int = 1) -> dict[str, object]:
    return {
        "tree_info": [
            {
                "tree_structure": {
                    "split_index": 0,
                    "split_feature": feature,
                    "decision_type": decision_type,
                    "threshold": threshold,
                    "left_child": {"leaf_value": 0.0},
                    "right_child": {"leaf_value": 1.0},
                }
            }
        ]
    }


def test_threshold_rows_sit_below_on_and_above_a_numeric_split() -> None:
    base = np.zeros((2, 3), dtype=np.float32)
    rows = threshold_rows(_stump_dump("<=", 1.5), base, 100, np.random.default_rng(0))
    assert rows.dtype == np.float32 and rows.shape == (3, 3)
    assert rows[:, 1].tolist() == [
        float(np.nextafter(np.float32(1.5), np.float32(0))),
        1.5,
        float(np.nextafter(np.float32(1.5), np.float32(2))),
    ]


def test_threshold_rows_cover_category_members_outsiders_and_the_unknown_code() -> None:
    base = np.zeros((1, 3), dtype=np.float32)
    rows = threshold_rows(_stump_dump("==", "0||2||5"), base, 100, np.random.default_rng(0))
    assert rows[:, 1].tolist() == [0.0, 1.0, -1.0]


def test_threshold_rows_follow_the_route_to_each_node() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((2000, 4)).astype(np.float32)
    y = ((X[:, 0] > 0.5) & (X[:, 2] > 0.3)).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1}, lgb.Dataset(X, y), 3
    )
    dump = booster.dump_model()
    rows = threshold_rows(dump, X[:10], 10_000, rng)
    leaves = booster.predict(rows, pred_leaf=True)
    # Every leaf of every tree is reached by some row: the routes through the ancestors work.
    for tree, info in enumerate(dump["tree_info"]):
        assert len(set(leaves[:, tree].tolist())) == info["num_leaves"]


def test_threshold_rows_are_capped() -> None:
    dump = {"tree_info": _stump_dump("<=", 0.5)["tree_info"] * 50}
    base = np.zeros((1, 3), dtype=np.float32)
    assert len(threshold_rows(dump, base, 30, np.random.default_rng(0))) == 30


def test_nan_rows_blank_every_column_in_turn() -> None:
    base = np.ones((50, 4), dtype=np.float32)
    rows = nan_rows(base, np.random.default_rng(0), fraction=0.0)
    for j in range(4):
        assert np.isnan(rows[j * 40 : (j + 1) * 40, j]).all()
        assert not np.isnan(np.delete(rows[j * 40 : (j + 1) * 40], j, axis=1)).any()


def test_parity_check_rows_groups() -> None:
    probe = np.ones((5, 3), dtype=np.float32)
    groups = parity_check_rows(probe, None, _stump_dump("<=", 0.5))
    assert list(groups) == ["probe", "nan_injected", THRESHOLD_EDGES]
    sample = np.zeros((7, 3), dtype=np.float32)
    groups = parity_check_rows(probe, sample, _stump_dump("<=", 0.5))
    assert list(groups) == ["probe", "train_sample", "nan_injected", THRESHOLD_EDGES]
    assert all(rows.dtype == np.float32 and rows.flags.c_contiguous for rows in groups.values())
