"""Product affinity (co-view association strengths) learned from the training split's sessions.

Only what shoppers viewed is used (the current and previous products of each page view),
never the click labels, so the affinity features cannot leak the target.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reco import AFFINITY_COLUMNS, NONE_PRODUCT
from training.schema import PREVIOUS_COLUMNS

# Pairs seen together in fewer sessions than this are left out (1 keeps every co-view).
MIN_SUPPORT = 1
# Pseudo-sessions added to each product's count: rare products get damped, not extreme, scores.
SMOOTHING = 5.0


def session_baskets(frame: pd.DataFrame) -> pd.DataFrame:
    """Distinct (session_id, product_id) pairs: every product a session viewed."""
    viewed = pd.concat(
        [
            frame[["session_id", c]].set_axis(["session_id", "product_id"], axis=1)
            for c in ("current_product_id", *PREVIOUS_COLUMNS)
        ],
        ignore_index=True,
    )
    viewed = viewed[viewed["product_id"].notna() & (viewed["product_id"] != NONE_PRODUCT)]
    return viewed.drop_duplicates(ignore_index=True)


def affinity_table(frame: pd.DataFrame, min_support: int = MIN_SUPPORT) -> pd.DataFrame:
    """AFFINITY_COLUMNS for every ordered pair viewed together in >= min_support sessions.

    confidence(i -> j) = sessions with both / (sessions with i + SMOOTHING)
    lift(i -> j)       = confidence / share of sessions with j
    strength           = confidence x lift
    """
    return affinity_from_baskets(session_baskets(frame), min_support)


def affinity_from_baskets(baskets: pd.DataFrame, min_support: int = MIN_SUPPORT) -> pd.DataFrame:
    """affinity_table from the distinct (session_id, product_id) pairs (session_baskets), which
    distributed training gathers from its partitions."""
    n_sessions = max(baskets["session_id"].nunique(), 1)
    codes, products = pd.factorize(baskets["product_id"], sort=True)
    sessions = pd.factorize(baskets["session_id"])[0]
    per_product = np.bincount(codes, minlength=len(products)).astype(np.float64)

    pairs = pd.DataFrame({"s": sessions, "p": codes}).merge(
        pd.DataFrame({"s": sessions, "q": codes}), on="s"
    )
    pairs = pairs[pairs["p"] != pairs["q"]]
    co = pairs.groupby(["p", "q"], sort=True).size()
    co = co[co >= min_support]
    src = co.index.get_level_values("p").to_numpy()
    dst = co.index.get_level_values("q").to_numpy()
    count = co.to_numpy().astype(np.float64)
    confidence = count / (per_product[src] + SMOOTHING)
    lift = confidence / ((per_product[dst] + SMOOTHING) / n_sessions)
    return pd.DataFrame(
        {
            "product_id": np.asarray(products)[src],
            "related_product_id": np.asarray(products)[dst],
            "co_count": count.astype(np.int64),
            "confidence": np.round(confidence, 6),
            "lift": np.round(lift, 6),
            "strength": np.round(confidence * lift, 6),
        },
        columns=list(AFFINITY_COLUMNS),
    )
