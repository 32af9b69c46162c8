"""The ONNX fallback's build side: onnxmltools export (probabilities only), float32 thresholds.

The serving side (a quiet one-thread onnxruntime session) is reco's OnnxModel."""

from __future__ import annotations

import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnxmltools
from onnxmltools.convert.common.data_types import FloatTensorType

from compiler.check_rows import float32_at_or_below
from reco import ONNX_INPUT_NAME as INPUT_NAME
from reco import ONNX_PROBABILITIES_OUTPUT as PROBABILITIES_OUTPUT

logger = logging.getLogger(__name__)

_CATEGORICAL_SPLIT = 1  # bit 0 of LightGBM's decision_type
# LightGBM's predictor reads any |x| <= kZeroThreshold as 0.0 (dense_entry.c does the same).
ZERO_THRESHOLD = float(np.float32(1e-35))


def onnx_threshold(threshold: float) -> float:
    """The float32 threshold t' for which a float32 x satisfies `x <= t'` exactly when
    LightGBM's `x_seen <= threshold` holds, where x_seen is 0.0 for |x| <= 1e-35 and x otherwise.
    """
    z = ZERO_THRESHOLD
    if 0.0 <= threshold < z:  # every tiny x is read as 0 <= threshold: left, like all x <= z
        return z
    if -z <= threshold < 0.0:  # every tiny x is read as 0 > threshold: only x < -z go left
        return float(np.nextafter(np.float32(-z), np.float32(-np.inf)))
    return float(float32_at_or_below(threshold))


def float32_exact_thresholds(model_text: str) -> str:
    """The same LightGBM model with every numerical threshold replaced by onnx_threshold().

    onnxruntime compares float32 inputs with float32 thresholds; onnxmltools rounds LightGBM's
    float64 thresholds to the nearest float32, which can land on a real feature value and send
    it the other way. For a float32 input x, `x <= t` holds exactly when `x <= t_down` does
    (t_down: the largest float32 <= t), so with t_down, adjusted for LightGBM reading tiny
    inputs as zero, the converted model routes every float32 row exactly as LightGBM does.
    """
    # tree_sizes= gives each tree's byte length for parallel parsing; rewritten thresholds change
    # the lengths, and without the line LightGBM parses the trees in order.
    lines = [line for line in model_text.split("\n") if not line.startswith("tree_sizes=")]
    for i, line in enumerate(lines):
        if not line.startswith("threshold="):
            continue
        values = line.removeprefix("threshold=").split()
        decisions = [int(d) for d in _tree_field(lines, i, "decision_type=").split()]
        lines[i] = "threshold=" + " ".join(
            value if decision & _CATEGORICAL_SPLIT else repr(onnx_threshold(float(value)))
            for value, decision in zip(values, decisions, strict=True)
        )
    return "\n".join(lines)


def _tree_field(lines: list[str], start: int, prefix: str) -> str:
    """The value of a field of the tree block containing line `start` (fields of a tree are
    written between its "Tree=" line and the next blank line)."""
    for line in lines[start:]:
        if line.startswith(prefix):
            return line.removeprefix(prefix)
        if not line.strip():
            break
    raise ValueError(f"tree at line {start} has no {prefix[:-1]}")


def export_onnx(model_file: Path, n_features: int, out: Path) -> None:
    """Converts a LightGBM binary model to ONNX at out: float32 input, no ZipMap, and float32
    thresholds that route float32 rows exactly as LightGBM's float64 ones."""
    booster = lgb.Booster(model_str=float32_exact_thresholds(model_file.read_text()))
    onnx_model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False,
    )
    outputs = [output.name for output in onnx_model.graph.output]
    if PROBABILITIES_OUTPUT not in outputs:
        raise ValueError(f"converted model has outputs {outputs}, no {PROBABILITIES_OUTPUT!r}")
    out.write_bytes(onnx_model.SerializeToString())
