"""Ranking semantics: order, ties, threshold, top-k, unscored candidates."""

from __future__ import annotations

import numpy as np

from server.core.ranking import rank


def test_sorted_descending_with_ties_in_request_order() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.7, 0.9])
    assert rank(scores, 0.0, 0).tolist() == [1, 4, 3, 0, 2]


def test_threshold_is_inclusive_and_top_k_cuts_after_filtering() -> None:
    scores = np.array([0.69, 0.7, 0.95, 0.71])
    assert rank(scores, 0.7, 0).tolist() == [2, 3, 1]
    assert rank(scores, 0.7, 2).tolist() == [2, 3]
    assert rank(scores, 0.99, 5).tolist() == []


def test_nan_scores_never_rank() -> None:
    scores = np.array([np.nan, 0.8, np.nan])
    assert rank(scores, 0.0, 0).tolist() == [1]
