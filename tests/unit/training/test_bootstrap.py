"""Session bootstrap: weighted statistics against scikit-learn, and intervals that cover."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from training.bootstrap import (
    Bootstrap,
    difference,
    ratio,
    weighted_auc,
    weighted_log_loss,
    weighted_mean,
)


def test_weighted_auc_and_log_loss_match_scikit_learn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.4
    scores = np.round(rng.random(500) * 0.6 + 0.3 * y, 1)  # few distinct values: many ties
    weights = rng.integers(0, 4, size=(3, 500)).astype(np.float64)
    rows = np.arange(500)  # every row its own session: the weights are the row weights
    auc = weighted_auc(y, scores)(rows)(np.vstack([np.ones(500), weights]))
    assert auc[0] == pytest.approx(roc_auc_score(y, scores))
    for got, w in zip(auc[1:], weights, strict=True):
        assert got == pytest.approx(roc_auc_score(y, scores, sample_weight=w))
    p = np.clip(scores, 0.01, 0.99)
    loss = weighted_log_loss(y, p)(rows)(weights)
    for got, w in zip(loss, weights, strict=True):
        assert got == pytest.approx(log_loss(y, p, sample_weight=w))


def clustered_sample(rng: np.random.Generator, sessions: int) -> tuple[np.ndarray, np.ndarray]:
    """Clicks of sessions with their own propensity; the population click rate is exactly 0.3."""
    size = rng.integers(1, 12, size=sessions)
    propensity = rng.choice([0.1, 0.5], size=sessions)  # mean 0.3 whatever the sizes
    unit = np.repeat(np.arange(sessions), size)
    clicked = rng.random(len(unit)) < propensity[unit]
    return clicked.astype(np.float64), unit


def test_the_session_interval_covers_the_known_click_rate_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    trials = 120
    for trial in range(trials):
        clicked, unit = clustered_sample(rng, 150)
        interval = Bootstrap.draw(150, replicates=400, seed=trial).interval(
            weighted_mean(clicked), unit
        )
        assert interval.low is not None and interval.high is not None
        covered += interval.low <= 0.3 <= interval.high
    # 95% nominal; 120 trials put a correct interval's count in [108, 120] with 99.9% chance
    assert 108 <= covered <= trials


def test_the_auc_interval_covers_the_known_population_auc() -> None:
    # positives ~ N(1, 1), negatives ~ N(0, 1): the population AUC is Phi(1 / sqrt 2)
    truth = 0.5 * (1 + math.erf(0.5))  # Phi(1 / sqrt 2) = (1 + erf(1 / 2)) / 2
    rng = np.random.default_rng(2)
    covered = 0
    trials = 60
    for trial in range(trials):
        y = rng.random(400) < 0.5
        scores = rng.standard_normal(400) + y
        interval = Bootstrap.draw(400, replicates=300, seed=trial).interval(
            weighted_auc(y, scores), np.arange(400)
        )
        assert interval.low is not None and interval.high is not None
        covered += interval.low <= truth <= interval.high
    assert covered >= 52  # 95% nominal: a correct interval covers >= 52 of 60 with 99.5%


def test_resampling_rows_instead_of_sessions_would_understate_the_uncertainty() -> None:
    clicked, unit = clustered_sample(np.random.default_rng(3), 200)
    by_session = Bootstrap.draw(200).interval(weighted_mean(clicked), unit)
    by_row = Bootstrap.draw(len(unit)).interval(weighted_mean(clicked), np.arange(len(unit)))
    assert by_session.value == by_row.value == pytest.approx(clicked.mean())
    assert by_session.high - by_session.low > 1.25 * (by_row.high - by_row.low)  # type: ignore[operator]


def test_paired_comparisons_use_the_same_replicates() -> None:
    clicked, unit = clustered_sample(np.random.default_rng(4), 100)
    boot = Bootstrap.draw(100)
    same = weighted_mean(clicked)
    zero = boot.interval(difference(same, same), unit)
    assert zero.value == zero.low == zero.high == 0.0
    one = boot.interval(ratio(same, same), unit)
    assert one.low == one.high == 1.0


def test_undefined_statistics_give_no_interval() -> None:
    boot = Bootstrap.draw(3)
    # one class only: AUC is undefined on the full sample and on every replicate
    interval = boot.interval(weighted_auc(np.ones(6), np.arange(6.0)), np.array([0, 0, 1, 1, 2, 2]))
    assert interval.value is None and interval.low is None
    assert boot.interval(weighted_mean(np.ones(0)), np.zeros(0, dtype=np.int64)).value is None
