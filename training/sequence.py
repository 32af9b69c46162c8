"""The sequence feature set's training side: every session's history folded page by page."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from reco import ViewHistory
from training.pages import PageViews

# Page views whose histories are turned into vectors at once; bounds training memory (the
# vectors are pages x the longest history in the block).
PAGES_PER_BLOCK = 20_000


def page_histories(pages: PageViews, viewed: npt.NDArray[np.str_]) -> list[ViewHistory]:
    """Every page's history just after its own view, with the fold the session stores use.

    viewed[p] is the product id on screen on page p; pages come session by session, in page
    order (PageViews' order).
    """
    out: list[ViewHistory] = []
    history = ViewHistory()
    for position, product_id in zip(pages.position.tolist(), viewed.tolist(), strict=True):
        if position == 0:
            history = ViewHistory()
        history = history.after_view(product_id)
        out.append(history)
    return out
