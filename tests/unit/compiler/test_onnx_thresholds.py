"""ONNX export rounds thresholds down to float32, so float32 rows route exactly as in LightGBM."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np

from compiler.onnx_model import (
    ZERO_THRESHOLD,
    export_onnx,
    float32_exact_thresholds,
    onnx_threshold,
)
from reco import OnnxModel


def _model_with_adjacent_values(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A model whose splits fall between adjacent float32 values (prices with cents do this)."""
    rng = np.random.default_rng(3)
    base = np.float32(60.99)
    values = np.array(
        [base, np.nextafter(base, np.float32(100)), np.float32(61.0)], dtype=np.float32
    )
    X = np.stack([rng.choice(values, 4000), rng.random(4000).astype(np.float32)], axis=1)
    y = (X[:, 0] > base).astype(int) ^ (rng.random(4000) < 0.05)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 5, "verbose": -1, "seed": 1},
        lgb.Dataset(X, y),
        20,
    )
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    rows = np.stack([np.repeat(values, 3), np.tile(np.float32([0.1, 0.5, 0.9]), 3)], axis=1)
    return path, np.ascontiguousarray(rows, dtype=np.float32)


def test_rewritten_thresholds_are_float32_at_or_below_and_tree_sizes_go(tmp_path: Path) -> None:
    path, _ = _model_with_adjacent_values(tmp_path)
    original = path.read_text()
    rewritten = float32_exact_thresholds(original)
    assert "tree_sizes=" in original and "tree_sizes=" not in rewritten
    before = [line for line in original.split("\n") if line.startswith("threshold=")]
    after = [line for line in rewritten.split("\n") if line.startswith("threshold=")]
    assert len(before) == len(after) > 0
    for old, new in zip(before, after, strict=True):
        for t, r in zip(old[10:].split(), new[10:].split(), strict=True):
            assert float(r) == onnx_threshold(float(t))
            assert float(np.float32(float(r))) == float(r)  # exactly representable


def test_onnx_routes_rows_between_a_threshold_and_its_nearest_float32_like_lightgbm(
    tmp_path: Path,
) -> None:
    path, rows = _model_with_adjacent_values(tmp_path)
    export_onnx(path, 2, tmp_path / "model.onnx")
    expected = lgb.Booster(model_file=str(path)).predict(rows)
    actual = OnnxModel(tmp_path / "model.onnx").predict(rows)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_categorical_thresholds_are_left_alone() -> None:
    text = (
        "Tree=0\nnum_leaves=2\nthreshold=0.30000000000000004 3\ndecision_type=2 1\n\nend of trees"
    )
    rewritten = float32_exact_thresholds(text)
    assert (
        "threshold=0.30000001192092896 3\n" in rewritten
        or "threshold=0.29999998211860657 3\n" in rewritten
    )


def test_thresholds_near_zero_account_for_lightgbm_reading_tiny_inputs_as_zero() -> None:
    from compiler.onnx_model import onnx_threshold

    tiny = np.float32(ZERO_THRESHOLD)
    inputs = np.array(
        [-2 * tiny, -tiny, np.nextafter(-tiny, 0), 0.0, tiny, 2 * tiny, 1.0], np.float32
    )
    seen = np.where(np.abs(inputs) <= tiny, 0.0, inputs.astype(np.float64))  # LightGBM's view
    for threshold in (-1.0, -ZERO_THRESHOLD, -1e-36, 0.0, 1e-36, ZERO_THRESHOLD, 2e-35, 0.5):
        adjusted = np.float32(onnx_threshold(threshold))
        assert float(adjusted) == onnx_threshold(threshold)  # exactly a float32
        np.testing.assert_array_equal(inputs <= adjusted, seen <= threshold, err_msg=str(threshold))
