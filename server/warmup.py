"""Warm-up: score synthetic requests through the full core path before reporting SERVING."""

from __future__ import annotations

import logging
import time

import numpy as np

from server.core.model import LoadedModel
from server.core.ranking import rank
from server.core.requests import Candidates, Context
from server.core.scoring import context_features, resolve_candidates

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 10, 100)


def warm_up(model: LoadedModel, requests: int, seed: int = 0) -> float:
    """Scores `requests` synthetic batches (catalog products, varied contexts) through the same
    functions a Score call uses, so page faults, lazy imports and branch predictors are paid
    for before traffic arrives. Returns the seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    ids = model.catalog.product_ids.tolist()
    for i in range(requests):
        size = min(BATCH_SIZES[i % len(BATCH_SIZES)], len(ids))
        picked = [ids[j] for j in rng.choice(len(ids), size=size, replace=False)]
        context = Context(
            current_product_id=ids[int(rng.integers(len(ids)))],
            previous_product_ids=tuple(ids[j] for j in rng.choice(len(ids), size=2)),
            products_in_cart=int(rng.integers(0, 4)),
            time_on_page_sec=float(rng.uniform(5, 300)),
            scroll_depth=float(rng.uniform(0, 1)),
            session_length_mins=float(rng.uniform(0, 30)),
            products_viewed_count=int(rng.integers(1, 15)),
        )
        resolved = resolve_candidates(model, Candidates(picked), skip_unknown=False)
        scores = model.backend.predict(context_features(model, context, resolved.inputs))
        rank(scores, model.threshold, 10)
    elapsed = time.perf_counter() - start
    log.info("warmed up model %s with %d requests in %.2fs", model.version, requests, elapsed)
    return elapsed
