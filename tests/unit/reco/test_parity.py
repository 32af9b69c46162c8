"""Parity comparison: tolerances, NaN outputs, row groups and the failure message."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.check_rows import THRESHOLD_EDGES
from reco import TOLERANCES, GroupedCheck, ParityError, compare


def test_compare_finds_the_worst_row_and_applies_the_tolerance() -> None:
    expected = np.array([0.1, 0.2, 0.3])
    result = compare("compiled", expected, expected + np.array([0.0, 2e-6, 1e-7]))
    assert result.worst_row == 1 and not result.passed
    assert result.max_abs_diff == pytest.approx(2e-6)
    assert compare("onnx", expected, expected + 2e-6).passed
    assert TOLERANCES == {"compiled": 1e-6, "onnx": 1e-4, "lightgbm": 1e-9, "request_kernel": 0.0}
    assert compare("request_kernel", expected, expected.copy()).passed
    assert not compare("request_kernel", expected, np.nextafter(expected, 1.0)).passed


def test_nan_output_is_an_infinite_error() -> None:
    result = compare("compiled", np.array([0.5, 0.5]), np.array([0.5, np.nan]))
    assert result.max_abs_diff == np.inf and result.worst_row == 1


def test_wrong_output_shape_is_a_parity_error() -> None:
    with pytest.raises(ParityError, match=r"shape \(1,\) for 2 rows"):
        compare("compiled", np.zeros(2), np.zeros(1))


def _check() -> GroupedCheck:
    groups = {
        "probe": np.array([[1.0, np.nan], [2.0, 3.0]], dtype=np.float32),
        THRESHOLD_EDGES: np.array([[5.0, 6.0]], dtype=np.float32),
    }
    return GroupedCheck(groups, lambda rows: rows[:, 0] / 10.0, ["price", "ratio"])


def test_failure_message_names_group_row_values_and_both_predictions() -> None:
    check = _check()
    record, message = check.run("compiled", lambda rows: rows[:, 0] / 10.0 + [0.0, 0.0, 0.5])
    assert record["status"] == "failed" and record["rows_checked"] == 3
    assert "worst row 2 (threshold_edges row 0)" in message
    assert "lightgbm 0.5 vs compiled 1.0" in message
    assert "price=5.0, ratio=6.0" in message
    _, message = check.run("compiled", lambda rows: rows[:, 0] / 10.0 + [0.0, 0.3, 0.0])
    assert "(probe row 1)" in message


def test_onnx_is_held_to_threshold_edges_like_every_backend() -> None:
    record, message = _check().run("onnx", lambda rows: rows[:, 0] / 10.0 + [0.0, 0.0, 0.5])
    assert record["status"] == "failed" and record["rows_checked"] == 3
    assert "(threshold_edges row 0)" in message
    edges = record["groups"][THRESHOLD_EDGES]
    assert edges == {"rows": 1, "max_abs_diff": 0.5, "rows_over_tolerance": 1}
