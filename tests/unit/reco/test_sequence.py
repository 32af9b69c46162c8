"""The sequence feature set: decayed history by hand; serving reproduces training bit for bit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reco import (
    DECAY,
    FEATURE_NAMES,
    FEATURE_SETS,
    MAX_HISTORY,
    NO_PRODUCT,
    SEQUENCE_FEATURES,
    CandidateInputs,
    Catalog,
    Encodings,
    Histories,
    ProductTables,
    SequenceTables,
    SessionContext,
    ViewHistory,
    Vocabulary,
    build_features,
    history_columns,
    sequence_inputs,
    session_inputs,
)
from reco._features import context_history
from training.affinity import affinity_table
from training.catalog import catalog_from_frame, tables_from_frame
from training.dataset import load_dataset
from training.features import features_from_frame
from training.generator import generate
from training.pages import page_views
from training.pipeline import fit_encodings
from training.settings import GenerationSettings

ENCODINGS = Encodings(
    category=Vocabulary(("Electronics", "Sports")),
    device_type=Vocabulary(("Desktop", "Mobile")),
    traffic_source=Vocabulary(("Direct", "Email")),
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return catalog_from_frame(
        pd.DataFrame(
            {
                "product_id": ["A", "B", "C", "D"],
                "name": ["Tent", "Laptop", "Headlamp", "Mouse"],
                "category": ["Sports", "Electronics", "Sports", "Electronics"],
                "subcategory": ["Camping", "Computing", "Camping", "Computing"],
                "price": [100.0, 900.0, 30.0, 40.0],
                "popularity": [1.0, 0.5, 0.25, 0.125],
                "in_stock": True,
            }
        )
    )


@pytest.fixture(scope="module")
def tables(catalog: Catalog) -> ProductTables:
    affinity = pd.DataFrame(
        {
            "product_id": ["A", "B"],
            "related_product_id": ["C", "C"],
            "co_count": [3, 1],
            "confidence": [0.5, 0.1],
            "lift": [2.0, 1.0],
            "strength": [1.0, 0.25],
        }
    )
    return tables_from_frame(catalog, affinity)


def page(viewed: int, current: str, previous: list[str], candidate: str, slot: int) -> dict:
    prev = [*previous, "NONE", "NONE", "NONE"][:3]
    return {
        "session_id": "S1",
        "customer_id": "C1",
        "current_product_id": current,
        "current_category": "Sports",
        "current_price": 100.0,
        "prev_product_1": prev[0],
        "prev_product_2": prev[1],
        "prev_product_3": prev[2],
        "products_in_cart": 0,
        "device_type": "Desktop",
        "traffic_source": "Direct",
        "time_on_page_sec": 60.0,
        "scroll_depth": 0.5,
        "clicked_product_image": 0,
        "session_length_mins": float(viewed),
        "products_viewed_count": viewed,
        "recommendation_clicked": 0,
        "rec_product_id": candidate,
        "rec_category": "Sports",
        "rec_price": 30.0,
        "timestamp": f"2025-01-01T00:0{viewed}:00Z",
        "slot": slot,
    }


def test_decayed_history_of_a_three_page_session_by_hand(
    catalog: Catalog, tables: ProductTables
) -> None:
    # views A (Camping), B (Computing), A again; the third page shows C (Camping) in slot 2.
    # Shuffled rows: the session's order comes from the page numbers, not the file order.
    rows = [
        page(3, "A", ["B", "A"], "C", 2),
        page(1, "A", [], "C", 0),
        page(2, "B", ["A"], "C", 1),
    ]
    got = pd.DataFrame(
        features_from_frame(pd.DataFrame(rows), ENCODINGS, catalog, tables, "sequence"),
        columns=list(FEATURE_SETS["sequence"]),
    ).iloc[0]
    total = 1 + DECAY + DECAY**2
    assert got["hist_subcategory_share"] == np.float32((1 + DECAY**2) / total)
    assert got["hist_category_share"] == np.float32((1 + DECAY**2) / total)
    assert got["hist_product_share"] == 0.0  # C was never viewed
    # affinity rows of the views: A -> C 1.0 (twice), B -> C 0.25
    assert got["hist_affinity"] == np.float32((1.0 + DECAY * 0.25 + DECAY**2 * 1.0) / total)
    assert got["same_subcategory"] == 1.0
    assert got["previous_same_subcategory"] == 1.0  # A (Camping) is among the previous
    assert got["landing_same_subcategory"] == 1.0
    assert got["slot"] == 2.0
    # page 2 alone: the frame's history starts at B (page 1 is missing from it), while the
    # previous-product columns still name A
    alone = features_from_frame(pd.DataFrame(rows[2:]), ENCODINGS, catalog, tables, "sequence")
    column = {name: len(FEATURE_NAMES) + j for j, name in enumerate(SEQUENCE_FEATURES)}
    assert alone[0, column["hist_subcategory_share"]] == 0.0
    assert alone[0, column["same_subcategory"]] == 0.0
    assert alone[0, column["landing_same_subcategory"]] == 0.0
    assert alone[0, column["previous_same_subcategory"]] == 1.0


def test_unknown_products_add_to_no_subcategory(catalog: Catalog, tables: ProductTables) -> None:
    sequence_tables = SequenceTables.build(catalog, tables)
    history = Histories.of([ViewHistory.of_views(["ZZZ", "A"])], catalog.index)
    assert history.total.tolist() == [1 + DECAY]
    assert history.index.tolist() == [[NO_PRODUCT, catalog.index["A"]]]
    assert history.weight.tolist() == [[DECAY, 1.0]]
    assert history.landing.tolist() == [NO_PRODUCT]  # landed on a product the catalog lacks
    c = np.array([catalog.index["C"]])
    none = np.full((1, 3), NO_PRODUCT)
    columns = history_columns(history, np.zeros(1, np.int64), c, c, none, np.zeros(1),
                              sequence_tables)  # fmt: skip
    named = dict(zip(SEQUENCE_FEATURES, (float(col[0]) for col in columns), strict=True))
    assert named["hist_subcategory_share"] == 1.0 / (1 + DECAY)  # A is Camping, ZZZ nothing
    assert named["hist_product_share"] == 0.0
    assert named["landing_same_subcategory"] == 0.0


def test_a_history_folds_views_and_keeps_the_heaviest_max_history_products() -> None:
    history = ViewHistory.of_views(["A", "B", "A"])
    assert history.product_ids == ("A", "B")
    assert history.weights == (DECAY**2 + 1.0, DECAY)
    assert history.total == 1.0 + DECAY + DECAY**2
    assert history.landing_product_id == "A"
    assert ViewHistory.from_row(history.to_row()) == history
    assert ViewHistory.from_row([list(history.product_ids), list(history.weights), 1.75, "A"]) == (
        history
    )
    # a long session: "A" viewed every other page stays; the oldest one-off views go first
    views = [v for k in range(MAX_HISTORY + 20) for v in ("A", f"P{k}")]
    long = ViewHistory.of_views(views)
    assert len(long.product_ids) == MAX_HISTORY
    assert long.product_ids[0] == "A"
    assert long.product_ids[1:] == tuple(f"P{k}" for k in range(21, MAX_HISTORY + 20))
    assert long.landing_product_id == "A"


def test_the_candidate_set_is_unchanged_at_the_front_of_the_sequence_set() -> None:
    assert FEATURE_SETS["sequence"][: len(FEATURE_NAMES)] == FEATURE_NAMES
    assert len(FEATURE_SETS["sequence"]) == len(FEATURE_NAMES) + len(SEQUENCE_FEATURES)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seq")
    generate(GenerationSettings(rows=2_000, seed=5, out_dir=out, progress=False))
    return out


def test_serving_side_history_reproduces_the_training_rows_bit_for_bit(generated: Path) -> None:
    data = load_dataset(generated)
    frame = data.frame
    assert data.catalog is not None
    catalog = catalog_from_frame(data.catalog)
    tables = tables_from_frame(catalog, affinity_table(frame))
    encodings = fit_encodings(frame, "candidate")
    trained = features_from_frame(frame, encodings, catalog, tables, "sequence")
    pages = page_views(frame)
    sequence_tables = SequenceTables.build(catalog, tables)
    current = frame["current_product_id"].to_numpy()[pages.first_row]
    rows = np.random.default_rng(0).choice(len(frame), 150, replace=False)
    for i in rows:
        row = frame.iloc[i]
        p = pages.row_page[i]
        same_session = np.flatnonzero(
            (pages.session == pages.session[p]) & (pages.position <= pages.position[p])
        )
        views = current[same_session[np.argsort(pages.position[same_session])]].tolist()
        session = session_inputs(
            SessionContext(
                current_product_id=row["current_product_id"],
                current_category=row["current_category"],
                current_price=row["current_price"],
                previous_product_ids=tuple(
                    [
                        row[f"prev_product_{k}"]
                        for k in (1, 2, 3)
                        if row[f"prev_product_{k}"] != "NONE"
                    ]
                ),
                products_in_cart=row["products_in_cart"],
                device_type=row["device_type"],
                traffic_source=row["traffic_source"],
                time_on_page_sec=row["time_on_page_sec"],
                scroll_depth=row["scroll_depth"],
                clicked_product_image=bool(row["clicked_product_image"]),
                session_length_mins=row["session_length_mins"],
                products_viewed_count=row["products_viewed_count"],
            ),
            encodings,
            catalog,
        )
        index = catalog.index[row["rec_product_id"]]
        candidates = CandidateInputs(
            category_code=encodings.category.encode([catalog.categories[index]]),
            price=catalog.prices[[index]],
            product_index=np.array([index], dtype=np.int64),
        )
        served_context = SessionContext(view_history=ViewHistory.of_views(views))
        sequence = sequence_inputs(served_context, catalog, sequence_tables, 1)
        # serving scores every candidate in slot 0; give it the logged slot to compare rows
        logged = replace(sequence, slot=np.array([float(row["slot"])]))
        served = build_features(session, candidates, tables, "sequence", logged)
        np.testing.assert_array_equal(served[0], trained[i], err_msg=f"row {i}")
        assert sequence.slot.tolist() == [0.0]


def test_a_request_context_without_a_history_stands_for_its_previous_and_current_views() -> None:
    sent = SessionContext(current_product_id="C", previous_product_ids=("B", "A"))
    assert context_history(sent) == ViewHistory.of_views(["A", "B", "C"])
    tracked = ViewHistory.of_views(["D", "A", "B", "C"])
    assert context_history(replace(sent, view_history=tracked)) is tracked
    assert context_history(SessionContext()) == ViewHistory()
