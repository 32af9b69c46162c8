"""Parity between a backend's probabilities and LightGBM's: tolerances, results, messages."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# Max abs difference from LightGBM's float64 probabilities each backend must stay within.
# onnx: onnxruntime's tree ensemble sums leaf values in float32. (Its float32 thresholds are
# exact: export rounds every threshold down to float32, see onnx_model.float32_exact_thresholds.)
# lightgbm: the same library should reproduce itself exactly; this catches library drift.
# request_kernel: the folded walk adds the same float64 leaves in the same order as LightGBM.
TOLERANCES = {"compiled": 1e-6, "onnx": 1e-4, "lightgbm": 1e-9, "request_kernel": 0.0}


class ParityError(ValueError):
    """A backend returned output that cannot be compared (wrong shape) with LightGBM's."""


@dataclass(frozen=True)
class ParityResult:
    """How one backend compared with LightGBM on a set of rows."""

    backend: str
    rows_checked: int
    max_abs_diff: float
    worst_row: int
    tolerance: float

    @property
    def passed(self) -> bool:
        """True when every row is within tolerance."""
        return self.max_abs_diff <= self.tolerance

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's record of this check."""
        return {
            "max_abs_diff": self.max_abs_diff,
            "rows_checked": self.rows_checked,
            "tolerance": self.tolerance,
        }


def compare(
    backend: str,
    expected: npt.NDArray[np.float64],
    actual: npt.NDArray[np.float64],
    tolerance: float | None = None,
) -> ParityResult:
    """Compares probabilities row by row; a NaN or missing output counts as an infinite error."""
    tolerance = TOLERANCES[backend] if tolerance is None else tolerance
    if actual.shape != expected.shape:
        raise ParityError(f"{backend} returned shape {actual.shape} for {expected.shape[0]} rows")
    if expected.size == 0:
        return ParityResult(backend, 0, 0.0, -1, tolerance)
    diff = np.abs(actual.astype(np.float64) - expected)
    diff[np.isnan(diff)] = np.inf
    worst = int(np.argmax(diff))
    return ParityResult(backend, int(expected.size), float(diff[worst]), worst, tolerance)


def _format_value(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(float(value))


def failure_message(
    result: ParityResult,
    row: npt.NDArray[np.float32],
    expected: float,
    actual: float,
    feature_names: Sequence[str],
    where: str = "",
) -> str:
    """Names the worst row: where it is, its feature values and both predictions."""
    values = ", ".join(
        f"{name}={_format_value(v)}" for name, v in zip(feature_names, row.tolist(), strict=True)
    )
    return (
        f"{result.backend} parity failed: max abs diff {result.max_abs_diff:.3g} > tolerance "
        f"{result.tolerance:g} over {result.rows_checked} rows; "
        f"worst row {where or result.worst_row}: lightgbm {expected!r} vs "
        f"{result.backend} {actual!r}; features: {values}"
    )


class GroupedCheck:
    """Named groups of check rows with LightGBM's probabilities, to hold backends against."""

    def __init__(
        self,
        groups: dict[str, npt.NDArray[np.float32]],
        reference: Callable[[npt.NDArray[np.float32]], npt.ArrayLike],
        feature_names: Sequence[str],
    ) -> None:
        """Concatenates the groups and computes the reference probabilities once."""
        self.rows = np.ascontiguousarray(np.concatenate(list(groups.values())), dtype=np.float32)
        self.expected = np.asarray(reference(self.rows), dtype=np.float64)
        self.feature_names = list(feature_names)
        self.slices: dict[str, slice] = {}
        start = 0
        for name, rows in groups.items():
            self.slices[name] = slice(start, start + len(rows))
            start += len(rows)

    def _locate(self, index: int) -> str:
        for name, part in self.slices.items():
            if part.start <= index < part.stop:
                return f"{index} ({name} row {index - part.start})"
        return str(index)

    def run(
        self, backend: str, predict: Callable[[npt.NDArray[np.float32]], npt.ArrayLike]
    ) -> tuple[dict[str, Any], str]:
        """The backend's manifest record (status "ok" or "failed", diffs overall and per group)
        and, when it failed, a message naming the worst row."""
        actual = np.asarray(predict(self.rows), dtype=np.float64)
        if actual.shape != self.expected.shape:
            raise ParityError(f"{backend} returned shape {actual.shape} for {len(self.rows)} rows")
        result = compare(backend, self.expected, actual)
        diffs = np.abs(actual - self.expected)
        diffs[np.isnan(diffs)] = np.inf
        groups = {
            name: {
                "rows": part.stop - part.start,
                "max_abs_diff": float(diffs[part].max(initial=0.0)),
                "rows_over_tolerance": int((diffs[part] > result.tolerance).sum()),
            }
            for name, part in self.slices.items()
        }
        record = {
            "status": "ok" if result.passed else "failed",
            **result.to_manifest(),
            "groups": groups,
        }
        if result.passed:
            return record, ""
        worst = result.worst_row
        message = failure_message(
            result,
            self.rows[worst],
            float(self.expected[worst]),
            float(actual[worst]),
            self.feature_names,
            self._locate(worst),
        )
        return record, message
