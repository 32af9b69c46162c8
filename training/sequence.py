"""The sequence feature set's training side: every session's history walked page by page."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from reco import History, SequenceTables
from training.pages import PageViews

I64 = npt.NDArray[np.int64]

# Sessions whose histories are folded together; bounds training memory (about 3.5 kB a session
# for a 200-product catalog).
SESSIONS_PER_BLOCK = 20_000


def walk(pages: PageViews, viewed: I64, tables: SequenceTables) -> Iterator[tuple[I64, History]]:
    """Every page's history just after its own view: (pages at one position, their History).

    viewed[p] is the catalog index of page p's product on screen. Sessions are folded
    SESSIONS_PER_BLOCK at a time, page position by page position.
    """
    for first in range(0, pages.n_sessions, SESSIONS_PER_BLOCK):
        in_block = (pages.session >= first) & (pages.session < first + SESSIONS_PER_BLOCK)
        block = np.flatnonzero(in_block)
        if not len(block):
            continue
        history = History.empty(min(SESSIONS_PER_BLOCK, pages.n_sessions - first), tables)
        position = pages.position[block]
        for t in range(int(position.max()) + 1):
            at = block[position == t]
            rows = pages.session[at] - first
            history.advance(rows, viewed[at], tables)
            yield at, history.take(rows)
