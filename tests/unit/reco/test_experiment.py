"""A/B statistics against reference values (scipy's, computed once and written here)."""

from __future__ import annotations

import math

import pytest

from reco import (
    chi_square_survival,
    difference,
    log_file_name,
    log_kind,
    sample_ratio_p_value,
    wilson,
)


def test_wilson_interval() -> None:
    est = wilson(30, 100)
    assert est.value == 0.3
    assert est.low == pytest.approx(0.2189, abs=1e-4) and est.high == pytest.approx(
        0.3958, abs=1e-4
    )
    assert math.isnan(wilson(0, 0).value)


@pytest.mark.parametrize(
    ("x", "dof", "expected"),
    [
        (3.841458820694124, 1, 0.05),
        (5.991464547107979, 2, 0.05),
        (0.5, 3, 0.918891),
        (30.0, 4, 4.89e-06),
    ],
)
def test_chi_square_survival(x: float, dof: int, expected: float) -> None:
    assert chi_square_survival(x, dof) == pytest.approx(expected, rel=1e-3)


def test_difference_and_sample_ratio() -> None:
    d = difference(0.10, 0.01, 0.13, 0.01)
    assert d.value == pytest.approx(0.03)
    assert d.p_value == pytest.approx(0.0339, abs=1e-3)
    assert d.low < 0.03 < d.high
    assert sample_ratio_p_value([5000, 5000], [0.5, 0.5]) == pytest.approx(1.0)
    assert sample_ratio_p_value([5200, 4800], [0.5, 0.5]) < 0.001


def test_log_names() -> None:
    name = log_file_name("impressions", "20260101T000000Z", 42, 10)
    assert log_kind(name) == "impressions"
    assert log_kind("." + name + ".tmp") is None
