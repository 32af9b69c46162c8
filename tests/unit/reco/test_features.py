"""The feature builder: features against hand-computed rows; serving == training bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reco import (
    CANDIDATE_FEATURES,
    FEATURE_NAMES,
    NO_PRODUCT,
    SESSION_FEATURES,
    UNKNOWN_CODE,
    CandidateInputs,
    Catalog,
    Encodings,
    ProductTables,
    SessionContext,
    Vocabulary,
    build_features,
    session_inputs,
)
from training.catalog import catalog_from_frame, tables_from_frame
from training.features import features_from_frame

CATEGORIES = ("Electronics", "Home", "Sports")
ENCODINGS = Encodings(
    category=Vocabulary(CATEGORIES),
    device_type=Vocabulary(("Desktop", "Mobile", "Tablet")),
    traffic_source=Vocabulary(("Direct", "Email", "Organic", "Paid", "Social")),
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return catalog_from_frame(
        pd.DataFrame(
            {
                "product_id": ["PROD0001", "PROD0002", "PROD0003", "PROD0004"],
                "name": ["Hiking Boots", "Tent", "Laptop", "Lamp"],
                "category": ["Sports", "Sports", "Electronics", "Home"],
                "subcategory": ["Camping", "Camping", "Computing", "Lighting"],
                "price": [120.0, 250.0, 999.0, 25.5],
                "popularity": [0.5, 0.25, 0.75, 0.125],
                "in_stock": [True, True, False, True],
            }
        )
    )


@pytest.fixture(scope="module")
def tables(catalog: Catalog) -> ProductTables:
    affinity = pd.DataFrame(
        {
            "product_id": ["PROD0001", "PROD0002", "PROD0003"],
            "related_product_id": ["PROD0002", "PROD0001", "PROD0004"],
            "co_count": [10, 8, 2],
            "confidence": [0.5, 0.4, 0.1],
            "lift": [2.0, 2.0, 1.0],
            "strength": [1.0, 0.8, 0.1],
        }
    )
    return tables_from_frame(catalog, affinity)


def impression(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "current_product_id": "PROD0001",
        "current_category": "Sports",
        "current_price": 120.0,
        "prev_product_1": "PROD0003",
        "prev_product_2": "PROD0002",
        "prev_product_3": "NONE",
        "products_in_cart": 2,
        "device_type": "Mobile",
        "traffic_source": "Email",
        "time_on_page_sec": 90.0,
        "scroll_depth": 0.75,
        "clicked_product_image": 1,
        "session_length_mins": 14.0,
        "products_viewed_count": 5,
        "rec_product_id": "PROD0002",
        "rec_category": "Sports",
        "rec_price": 250.0,
    }
    row.update(overrides)
    return row


def features_of(
    rows: list[dict[str, object]], catalog: Catalog, tables: ProductTables
) -> pd.DataFrame:
    matrix = features_from_frame(pd.DataFrame(rows), ENCODINGS, catalog, tables)
    return pd.DataFrame(matrix, columns=list(FEATURE_NAMES))


def test_feature_names_are_the_notebook_19_then_the_candidate_features() -> None:
    assert len(SESSION_FEATURES) == 19
    assert FEATURE_NAMES[:19] == SESSION_FEATURES
    assert FEATURE_NAMES[19:] == CANDIDATE_FEATURES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_every_feature_of_a_hand_computed_row(catalog: Catalog, tables: ProductTables) -> None:
    got = features_of([impression()], catalog, tables).iloc[0].to_dict()
    expected = {
        "category_enc": 2.0,  # Sports in (Electronics, Home, Sports)
        "current_price": 120.0,
        "products_in_cart": 2.0,
        "device_enc": 1.0,  # Mobile
        "traffic_enc": 1.0,  # Email
        "time_on_page_sec": 90.0,
        "scroll_depth": np.float32(0.75),
        "clicked_product_image": 1.0,
        "session_length_mins": 14.0,
        "products_viewed_count": 5.0,
        "has_items_in_cart": 1.0,
        "high_engagement": 1.0,  # 90 >= 60 and 0.75 >= 0.6
        "premium_product": 1.0,  # 120 > 100
        "low_price_product": 0.0,
        "multi_product_session": 1.0,  # 5 >= 3
        "engagement_score": np.float32(90 / 300 * 0.75),
        "engaged_shopper": 1.0,  # 14 >= 10 and 5 >= 3
        "quick_browser": 0.0,
        "session_intensity": np.float32(5 / 15),
        "rec_category_enc": 2.0,
        "rec_price": 250.0,
        "price_ratio": np.float32(250 / 120),
        "same_category": 1.0,
        "rec_in_previous": 1.0,  # PROD0002 is prev_product_2
        "affinity_current": 1.0,  # PROD0001 -> PROD0002
        "affinity_previous": 0.0,  # PROD0003 -> PROD0002 and PROD0002 -> itself: none
        "rec_popularity": 0.25,
    }
    assert got == pytest.approx(expected, rel=0, abs=0)


def test_threshold_edges_and_quick_browser(catalog: Catalog, tables: ProductTables) -> None:
    rows = [
        impression(time_on_page_sec=60.0, scroll_depth=0.6, current_price=100.0),
        impression(
            time_on_page_sec=10.0,
            scroll_depth=0.1,
            current_price=29.99,
            products_in_cart=0,
            session_length_mins=0.0,
            products_viewed_count=1,
        ),
        impression(time_on_page_sec=3000.0, scroll_depth=1.0),
    ]
    got = features_of(rows, catalog, tables)
    assert got["high_engagement"].tolist() == [1.0, 0.0, 1.0]  # >= at both edges
    assert got["premium_product"].tolist() == [0.0, 0.0, 1.0]  # strictly > 100
    assert got["low_price_product"].tolist() == [0.0, 1.0, 0.0]
    assert got["quick_browser"].tolist() == [0.0, 1.0, 0.0]
    assert got["has_items_in_cart"].tolist() == [1.0, 0.0, 1.0]
    assert got["session_intensity"].iloc[1] == 1.0  # 1 / (0 + 1)
    assert got["engagement_score"].iloc[2] == 1.0  # clipped at 1


def test_affinity_previous_takes_the_strongest_previous_product(
    catalog: Catalog, tables: ProductTables
) -> None:
    row = impression(
        current_product_id="PROD0004",
        current_category="Home",
        prev_product_1="PROD0002",
        prev_product_2="PROD0003",
        rec_product_id="PROD0001",
    )
    got = features_of([row], catalog, tables).iloc[0]
    assert got["affinity_previous"] == np.float32(0.8)  # PROD0002 -> PROD0001
    assert got["affinity_current"] == 0.0
    assert got["rec_in_previous"] == 0.0
    assert got["same_category"] == 0.0


def test_unseen_categories_and_products_map_to_reserved_codes(
    catalog: Catalog, tables: ProductTables
) -> None:
    row = impression(
        current_category="Garden",
        device_type="SmartTV",
        traffic_source="Carrier",
        current_product_id="PROD9999",
        rec_product_id="PROD8888",
        rec_category="Garden",
    )
    got = features_of([row], catalog, tables).iloc[0]
    assert got["category_enc"] == UNKNOWN_CODE
    assert got["device_enc"] == UNKNOWN_CODE
    assert got["traffic_enc"] == UNKNOWN_CODE
    assert got["rec_category_enc"] == UNKNOWN_CODE
    assert got["same_category"] == 0.0  # two unseen categories are not known to be equal
    assert got["affinity_current"] == 0.0
    assert math.isnan(got["rec_popularity"])


def test_vocabulary_scalar_and_vectorised_encodings_agree() -> None:
    values = ["Sports", "Home", "Garden", "", "Electronics", "Zzz", "Aaa"]
    vectorised = ENCODINGS.category.encode(values).tolist()
    assert vectorised == [ENCODINGS.category.code(v) for v in values]
    assert vectorised == [2.0, 1.0, UNKNOWN_CODE, UNKNOWN_CODE, 0.0, UNKNOWN_CODE, UNKNOWN_CODE]


def test_vocabulary_round_trips_through_the_manifest() -> None:
    assert Encodings.from_manifest(ENCODINGS.to_manifest()) == ENCODINGS
    with pytest.raises(ValueError, match="sorted"):
        Vocabulary(("b", "a"))


def context_of(row: dict[str, object], catalog: Catalog) -> dict[str, object]:
    """The serving-side view of a training row."""
    previous = [str(row[f"prev_product_{k}"]) for k in (1, 2, 3)]
    return {
        "current_product_id": row["current_product_id"],
        "current_category": row["current_category"],
        "current_price": row["current_price"],
        "previous_product_ids": [p for p in previous if p != "NONE"],
        "products_in_cart": row["products_in_cart"],
        "device_type": row["device_type"],
        "traffic_source": row["traffic_source"],
        "time_on_page_sec": row["time_on_page_sec"],
        "scroll_depth": row["scroll_depth"],
        "clicked_product_image": bool(row["clicked_product_image"]),
        "session_length_mins": row["session_length_mins"],
        "products_viewed_count": row["products_viewed_count"],
    }


def serve_features(
    context: dict[str, object],
    candidates: list[tuple[str, str, float]],
    catalog: Catalog,
    tables: ProductTables,
) -> np.ndarray:
    session = session_inputs(SessionContext(**context), ENCODINGS, catalog)  # type: ignore[arg-type]
    cand = CandidateInputs(
        category_code=ENCODINGS.category.encode([c[1] for c in candidates]),
        price=np.array([c[2] for c in candidates], dtype=np.float32),
        product_index=catalog.indices_of([c[0] for c in candidates]),
    )
    return build_features(session, cand, tables)


product = st.sampled_from(["PROD0001", "PROD0002", "PROD0003", "PROD0004", "PROD0404"])
maybe_nan = st.one_of(st.just(float("nan")), st.floats(0, 1000, allow_nan=False, width=32))


@settings(max_examples=150, deadline=None)
@given(
    current=product,
    category=st.sampled_from([*CATEGORIES, "Garden"]),
    price=st.one_of(st.just(float("nan")), st.floats(0.125, 5000, width=32)),
    previous=st.lists(product, max_size=3),
    cart=st.integers(0, 20),
    time=maybe_nan,
    scroll=st.one_of(st.just(float("nan")), st.floats(0, 1, width=32)),
    minutes=st.floats(0, 240, width=32),
    viewed=st.integers(0, 60),
    candidates=st.lists(
        st.tuples(
            product, st.sampled_from([*CATEGORIES, "Toys"]), st.floats(0.125, 5000, width=32)
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_serving_features_equal_training_features_bit_for_bit(
    catalog: Catalog,
    tables: ProductTables,
    current: str,
    category: str,
    price: float,
    previous: list[str],
    cart: int,
    time: float,
    scroll: float,
    minutes: float,
    viewed: int,
    candidates: list[tuple[str, str, float]],
) -> None:
    padded = [*previous, "NONE", "NONE", "NONE"][:3]
    rows = [
        impression(
            current_product_id=current,
            current_category=category,
            current_price=price,
            prev_product_1=padded[0],
            prev_product_2=padded[1],
            prev_product_3=padded[2],
            products_in_cart=cart,
            time_on_page_sec=time,
            scroll_depth=scroll,
            session_length_mins=minutes,
            products_viewed_count=viewed,
            rec_product_id=pid,
            rec_category=cat,
            rec_price=cprice,
        )
        for pid, cat, cprice in candidates
    ]
    trained = features_from_frame(pd.DataFrame(rows), ENCODINGS, catalog, tables)
    served = serve_features(context_of(rows[0], catalog), candidates, catalog, tables)
    assert served.dtype == np.float32 and served.flags.c_contiguous
    np.testing.assert_array_equal(served.view(np.uint32), trained.view(np.uint32))


def test_missing_context_values_become_nan_not_zero(
    catalog: Catalog, tables: ProductTables
) -> None:
    context = dict.fromkeys(
        [
            "current_category",
            "current_price",
            "products_in_cart",
            "device_type",
            "traffic_source",
            "time_on_page_sec",
            "scroll_depth",
            "clicked_product_image",
            "session_length_mins",
            "products_viewed_count",
        ]
    )
    session = session_inputs(
        SessionContext(current_product_id="", **context),
        ENCODINGS,
        catalog,
    )
    cand = CandidateInputs(
        np.array([2.0], np.float32), np.array([10.0], np.float32), np.array([0], np.int64)
    )
    got = dict(zip(FEATURE_NAMES, build_features(session, cand, tables)[0].tolist(), strict=True))
    for name in SESSION_FEATURES:
        assert math.isnan(got[name]), name
    assert math.isnan(got["price_ratio"]) and math.isnan(got["same_category"])
    assert got["rec_in_previous"] == 0.0 and got["affinity_previous"] == 0.0


def test_context_defaults_category_and_price_from_the_catalog(
    catalog: Catalog, tables: ProductTables
) -> None:
    row = impression()
    context = context_of(row, catalog) | {"current_category": None, "current_price": None}
    served = serve_features(context, [("PROD0002", "Sports", 250.0)], catalog, tables)
    trained = features_from_frame(pd.DataFrame([row]), ENCODINGS, catalog, tables)
    np.testing.assert_array_equal(served, trained)


def test_session_feature_set_has_one_row_per_session_row() -> None:
    frame = pd.DataFrame([impression(), impression(products_in_cart=0)])
    matrix = features_from_frame(frame, ENCODINGS, None, None, feature_set="session")
    assert matrix.shape == (2, 19)
    assert matrix[:, SESSION_FEATURES.index("has_items_in_cart")].tolist() == [1.0, 0.0]


def test_catalog_indices_of_marks_unknown_ids(catalog: Catalog) -> None:
    assert catalog.indices_of(["PROD0003", "NONE", "PROD0001", "x"]).tolist() == [
        2,
        NO_PRODUCT,
        0,
        NO_PRODUCT,
    ]


def test_blank_categories_are_missing_in_training_and_serving_alike(
    catalog: Catalog, tables: ProductTables
) -> None:
    row = impression(current_category="", device_type=None, traffic_source="")
    trained = features_of([row], catalog, tables).iloc[0]
    assert math.isnan(trained["category_enc"]) and math.isnan(trained["device_enc"])
    assert math.isnan(trained["traffic_enc"])
    context = context_of(row, catalog) | {
        "current_category": "",
        "device_type": None,
        "traffic_source": "",
    }
    served = serve_features(context, [("PROD0002", "Sports", 250.0)], catalog, tables)
    np.testing.assert_array_equal(served, features_of([row], catalog, tables).to_numpy(np.float32))
