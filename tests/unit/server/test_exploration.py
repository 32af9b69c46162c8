"""Exploration: greedy by default, exact marginal propensities, deterministic given a seed."""

from __future__ import annotations

import numpy as np
import pytest

from server.core.exploration import GREEDY, Explorer


def test_off_by_default_shows_the_top_k_with_propensity_one() -> None:
    choice = Explorer().choose("A", np.arange(10, dtype=np.int64), 3)
    assert choice.shown.tolist() == [0, 1, 2]
    assert choice.propensities.tolist() == [1.0, 1.0, 1.0]
    assert choice.policy == GREEDY


def test_same_seed_same_slates_and_other_variants_stay_greedy() -> None:
    ranked = np.arange(20, dtype=np.int64)
    a = [Explorer({"A": 0.5}, seed=3).choose("A", ranked, 4).shown.tolist() for _ in range(1)]
    one, two = Explorer({"A": 0.5}, seed=3), Explorer({"A": 0.5}, seed=3)
    first = [one.choose("A", ranked, 4).shown.tolist() for _ in range(50)]
    assert first == [two.choose("A", ranked, 4).shown.tolist() for _ in range(50)]
    assert first[0] == a[0]
    assert Explorer({"A": 0.5}, seed=3).choose("B", ranked, 4).shown.tolist() == [0, 1, 2, 3]


def test_logged_propensities_are_the_empirical_marginals() -> None:
    """P(item i in slot j) = (1 - eps) [greedy] + eps / m: checked against 40,000 draws."""
    m, k, eps, draws = 8, 3, 0.3, 40_000
    explorer = Explorer({"A": eps}, seed=11)
    ranked = np.arange(m, dtype=np.int64)
    counts = np.zeros((m, k))
    for _ in range(draws):
        choice = explorer.choose("A", ranked, k)
        counts[choice.shown, np.arange(k)] += 1
        expected = eps / m + (1 - eps) * (choice.shown == ranked[:k])
        assert np.allclose(choice.propensities, expected)
    truth = np.full((m, k), eps / m)
    truth[np.arange(k), np.arange(k)] += 1 - eps
    assert np.abs(counts / draws - truth).max() < 0.01


def test_fewer_eligible_than_slots_and_a_bad_epsilon() -> None:
    choice = Explorer({"A": 1.0}, seed=1).choose("A", np.array([5, 7], dtype=np.int64), 5)
    assert sorted(choice.shown.tolist()) == [5, 7]
    assert np.allclose(choice.propensities, 0.5)
    with pytest.raises(ValueError, match="epsilon of variant 'A'"):
        Explorer({"A": 1.5})
