"""Product affinity from co-views, computed by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from training.affinity import SMOOTHING, affinity_table, session_baskets


def page(session: str, current: str, *previous: str, clicked: int = 0) -> dict[str, object]:
    padded = [*previous, "NONE", "NONE", "NONE"][:3]
    return {
        "session_id": session,
        "current_product_id": current,
        "prev_product_1": padded[0],
        "prev_product_2": padded[1],
        "prev_product_3": padded[2],
        "recommendation_clicked": clicked,
    }


FRAME = pd.DataFrame(
    [
        page("s1", "A", "B"),
        page("s1", "A", "B"),  # a second candidate row of the same page view
        page("s2", "C", "B", "A"),
        page("s3", "C", clicked=1),
    ]
)


def test_baskets_are_distinct_products_per_session_without_none() -> None:
    baskets = session_baskets(FRAME)
    got = baskets.groupby("session_id")["product_id"].apply(sorted).to_dict()
    assert got == {"s1": ["A", "B"], "s2": ["A", "B", "C"], "s3": ["C"]}


def test_confidence_lift_and_strength_by_hand() -> None:
    table = affinity_table(FRAME, min_support=1).set_index(["product_id", "related_product_id"])
    n_sessions, n_a, n_b = 3, 2, 2
    confidence = 2 / (n_a + SMOOTHING)  # A and B share sessions s1 and s2
    lift = confidence / ((n_b + SMOOTHING) / n_sessions)
    row = table.loc[("A", "B")]
    assert row["co_count"] == 2
    assert row["confidence"] == pytest.approx(confidence, abs=1e-6)
    assert row["lift"] == pytest.approx(lift, abs=1e-6)
    assert row["strength"] == pytest.approx(confidence * lift, abs=1e-6)
    assert table.loc[("C", "A"), "co_count"] == 1
    assert ("A", "A") not in table.index  # a product is not its own complement
    assert len(table) == 6  # every ordered pair among A, B, C


def test_min_support_drops_rare_pairs_and_labels_are_never_used() -> None:
    table = affinity_table(FRAME, min_support=2)
    assert set(zip(table["product_id"], table["related_product_id"], strict=True)) == {
        ("A", "B"),
        ("B", "A"),
    }
    relabelled = FRAME.assign(recommendation_clicked=1 - FRAME["recommendation_clicked"])
    pd.testing.assert_frame_equal(affinity_table(relabelled), affinity_table(FRAME))
