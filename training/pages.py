"""Page views of an impressions frame: which rows were shown together, in what session order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.schema import TIMESTAMP

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PageViews:
    """The page views of a frame, ordered by session and by position within the session.

    row_page[i] is the page view of frame row i; first_row[p] is page p's first row (the
    session columns are the same on every row of a page); session[p] numbers the sessions
    0..n_sessions-1 in order of first appearance; position[p] counts the session's page views
    from 0. Rows of one page view share session_id and timestamp (products_viewed_count when
    there is no timestamp column).
    """

    row_page: I64
    first_row: I64
    session: I64
    position: I64

    def __len__(self) -> int:
        return len(self.first_row)

    @property
    def n_sessions(self) -> int:
        """Number of distinct sessions."""
        return int(self.session.max()) + 1 if len(self.session) else 0

    def earlier(self, viewed: I64, width: int | None = None) -> I64:
        """(pages, width) products viewed on the session's earlier pages, oldest first, -1 pad.

        viewed[p] is the product on screen on page p; width defaults to the longest session.
        """
        longest = int(self.position.max()) if len(self.position) else 0
        width = longest if width is None else width
        out = np.full((len(self), max(width, 1)), -1, dtype=np.int64)
        start = np.flatnonzero(np.r_[True, self.session[1:] != self.session[:-1]])
        session_start = np.repeat(start, np.diff(np.r_[start, len(self)]))
        for k in range(min(width, longest)):
            # page p's k-th earlier page is page session_start + k, if it came before p
            has = self.position > k
            out[has, k] = viewed[session_start[has] + k]
        return out


def page_keys(frame: pd.DataFrame) -> npt.NDArray[np.str_]:
    """One key per page view: candidates shown together share it."""
    moment = TIMESTAMP if TIMESTAMP in frame.columns else "products_viewed_count"
    key = frame["session_id"].astype(str) + "|" + frame[moment].astype(str)
    return key.to_numpy(dtype=str)


def page_views(frame: pd.DataFrame) -> PageViews:
    """Groups the frame's rows into page views (vectorised; the frame may be in any order)."""
    if frame.empty:
        empty = np.zeros(0, dtype=np.int64)
        return PageViews(empty, empty, empty, empty)
    key_code, uniques = pd.factorize(page_keys(frame))
    key_code = key_code.astype(np.int64)
    n_pages = len(uniques)
    rows = np.arange(len(frame), dtype=np.int64)
    first_of_key = np.full(n_pages, len(frame), dtype=np.int64)
    np.minimum.at(first_of_key, key_code, rows)
    session_code = pd.factorize(frame["session_id"].astype(str))[0].astype(np.int64)
    viewed = pd.to_numeric(frame["products_viewed_count"], errors="coerce").to_numpy(np.float64)
    moment = (
        pd.to_datetime(frame[TIMESTAMP], utc=True, errors="coerce").to_numpy(np.int64)
        if TIMESTAMP in frame.columns
        else np.zeros(len(frame), dtype=np.int64)
    )
    page_viewed = np.full(n_pages, np.inf)
    np.fmin.at(page_viewed, key_code, viewed)
    page_moment = np.full(n_pages, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(page_moment, key_code, moment)
    # Sessions in order of first appearance; a session's pages by page number, then time.
    page_session = session_code[first_of_key]
    order = np.lexsort((np.arange(n_pages), page_moment, page_viewed, page_session))
    rank = np.empty(n_pages, dtype=np.int64)
    rank[order] = np.arange(n_pages)
    session = page_session[order]
    start = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    position = np.arange(n_pages) - np.repeat(start, np.diff(np.r_[start, n_pages]))
    return PageViews(rank[key_code], first_of_key[order], session, position.astype(np.int64))
