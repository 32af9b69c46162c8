"""Warm-up: Score and Recommend calls through the core's own code before reporting SERVING."""

from __future__ import annotations

import logging
import time

import numpy as np

from reco import SessionContext
from server.core.model import LoadedModel
from server.core.recommend import Recommender, RecommendQuery
from server.core.requests import Candidates, ScoreQuery
from server.core.scoring import Scorer

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 10, 100)
# One call in this many is a Recommend (a tracked session, the whole pool, every rule).
RECOMMEND_EVERY = 4


def warm_up(model: LoadedModel, scorer: Scorer, recommender: Recommender, requests: int,
            seed: int = 0) -> float:  # fmt: skip
    """Runs `requests` synthetic calls (catalog products, varied contexts) through the same
    Scorer.score_on and Recommender.recommend_on that serve traffic, against `model` before it
    is installed, so page faults, lazy imports and branch predictors are paid for before
    traffic arrives: Score batches of 1, 10 and 100 candidates, and every fourth call a
    Recommend (cold start included; with explanations when the model has them). Returns the
    seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    ids = model.catalog.product_ids.tolist()
    for i in range(requests):
        size = min(BATCH_SIZES[i % len(BATCH_SIZES)], len(ids))
        picked = [ids[j] for j in rng.choice(len(ids), size=size, replace=False)]
        context = SessionContext(
            session_id=f"warm-up-{i}",
            current_product_id=ids[int(rng.integers(len(ids)))],
            previous_product_ids=tuple(ids[j] for j in rng.choice(len(ids), size=2)),
            products_in_cart=int(rng.integers(0, 4)),
            time_on_page_sec=float(rng.uniform(5, 300)),
            scroll_depth=float(rng.uniform(0, 1)),
            session_length_mins=float(rng.uniform(0, 30)),
            products_viewed_count=int(rng.integers(1, 15)),
            cart_product_ids=(ids[int(rng.integers(len(ids)))],),
        )
        if i % RECOMMEND_EVERY == RECOMMEND_EVERY - 1:
            query = RecommendQuery(context.session_id, explain=model.explainer is not None,
                                   max_per_category=i % 3)  # fmt: skip
            known = None if i % (2 * RECOMMEND_EVERY) == RECOMMEND_EVERY - 1 else context
            recommender.recommend_on(model, "", query, known)
        else:
            score = ScoreQuery(context, Candidates(picked), top_k=10)
            scorer.score_on(model, "", score, context)
    elapsed = time.perf_counter() - start
    log.info("warmed up model %s with %d requests in %.2fs", model.version, requests, elapsed)
    return elapsed
