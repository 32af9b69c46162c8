"""Ranking: sort by score, keep those at or above the threshold, cut at top-k."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def rank(scores: npt.NDArray[np.float64], min_score: float, top_k: int) -> npt.NDArray[np.int64]:
    """Indices of the ranked candidates: score descending, ties in request order.

    NaN scores (unscored candidates) never pass the threshold. top_k <= 0 keeps all that pass.
    """
    passing = np.flatnonzero(scores >= min_score)
    # A stable sort of the negated scores keeps equal scores in request order.
    order = passing[np.argsort(-scores[passing], kind="stable")]
    return order[:top_k] if top_k > 0 else order
