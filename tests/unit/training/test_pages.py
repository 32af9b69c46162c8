"""Page views: rows shown together, in session order, whatever the order of the file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.pages import page_views


def test_rows_group_into_page_views_in_session_order() -> None:
    rows = [  # (session, page number, timestamp minute, current product)
        ("S2", 1, 5, "X"),
        ("S1", 2, 2, "B"),
        ("S1", 1, 1, "A"),
        ("S2", 1, 5, "X"),
        ("S1", 2, 2, "B"),
        ("S1", 3, 3, "C"),
    ]
    frame = pd.DataFrame(
        {
            "session_id": [r[0] for r in rows],
            "products_viewed_count": [r[1] for r in rows],
            "timestamp": [f"2025-01-01T00:0{r[2]}:00Z" for r in rows],
            "current_product_id": [r[3] for r in rows],
        }
    )
    pages = page_views(frame)
    assert len(pages) == 4 and pages.n_sessions == 2
    # sessions numbered by first appearance (S2 first), pages by their number within it
    assert pages.session.tolist() == [0, 1, 1, 1]
    assert pages.position.tolist() == [0, 0, 1, 2]
    assert pages.row_page.tolist() == [0, 2, 1, 0, 2, 3]
    assert frame["current_product_id"].iloc[pages.first_row].tolist() == ["X", "A", "B", "C"]
    viewed = np.array([9, 0, 1, 2])  # product index on screen per page
    np.testing.assert_array_equal(pages.earlier(viewed), [[-1, -1], [-1, -1], [0, -1], [0, 1]])


def test_without_timestamps_the_page_number_separates_page_views() -> None:
    frame = pd.DataFrame({"session_id": ["S", "S", "S"], "products_viewed_count": [2, 1, 2]})
    pages = page_views(frame)
    assert pages.row_page.tolist() == [1, 0, 1] and pages.position.tolist() == [0, 1]
    assert len(page_views(frame.iloc[:0])) == 0
