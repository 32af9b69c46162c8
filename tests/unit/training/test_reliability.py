"""Calibration: ECE by hand, its noise floor, Platt's fit and test, folding it into the trees."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from training.reliability import Platt, ece, ece_noise_floor, reliability_bins


def test_reliability_bins_and_ece_by_hand() -> None:
    y = [1, 0, 1, 1, 0]
    scores = [0.15, 0.12, 0.95, 0.85, 1.0]
    bins = reliability_bins(y, scores)
    assert [b["rows"] for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 1, 2]  # 1.0 joins the last bin
    assert bins[1]["predicted"] == pytest.approx(0.135) and bins[1]["observed"] == 0.5
    assert bins[0]["predicted"] is None and bins[0]["observed"] is None
    # gaps: 0.365 on two rows, 0.15 on one, |0.5 - 0.975| on two
    assert ece(y, scores) == pytest.approx((2 * 0.365 + 0.15 + 2 * 0.475) / 5)


def test_a_calibrated_model_still_shows_sampling_ece_and_a_miscalibrated_one_exceeds_it() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 3000)
    median, high = ece_noise_floor(p)
    assert 0.005 < median < high < 0.04
    overconfident = np.clip(0.5 + 1.4 * (p - 0.5), 0, 1)
    assert ece(rng.random(3000) < p, overconfident) > 2 * high


def test_platt_recovers_a_known_map_and_its_test_tells_calibrated_from_not() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 2, 20_000)
    y = rng.random(20_000) < 1 / (1 + np.exp(-(0.5 * raw + 0.3)))
    fitted = Platt.fit(raw, y)
    assert fitted.a == pytest.approx(0.5, abs=0.03) and fitted.b == pytest.approx(0.3, abs=0.05)
    assert fitted.p_value(raw, y) < 1e-6
    calibrated = rng.random(20_000) < 1 / (1 + np.exp(-raw))
    assert Platt.fit(raw, calibrated).p_value(raw, calibrated) > 0.01


def test_platt_folded_into_the_trees_is_the_calibrated_probability_exactly() -> None:
    rng = np.random.default_rng(2)
    X = rng.random((2000, 4))
    y = rng.random(2000) < 1 / (1 + np.exp(-4 * (X[:, 0] - 0.5)))
    params = {"objective": "binary", "verbosity": -1, "num_leaves": 8, "max_depth": 3}
    booster = lgb.train(params, lgb.Dataset(X, y), 30)
    platt = Platt(a=0.8, b=-0.25)
    folded = platt.fold_into(booster)
    raw = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(folded.predict(X, raw_score=True), 0.8 * raw - 0.25, atol=1e-12)
    np.testing.assert_allclose(folded.predict(X), platt.apply(raw), atol=1e-12)
    # what the bundle stores is what serves: the text round trip changes nothing
    again = lgb.Booster(model_str=folded.model_to_string())
    np.testing.assert_array_equal(again.predict(X), folded.predict(X))
    assert folded.num_trees() == booster.num_trees()
