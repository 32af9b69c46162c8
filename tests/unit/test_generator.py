"""The data generator: determinism, the impressions schema, the catalog and the behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.behaviour import DEVICES, TRAFFIC_SOURCES, Customers, World, simulate
from training.calibration import TARGET_DEVICE, TARGET_TRAFFIC, fit_offsets
from training.catalog import CATALOG_COLUMNS, Catalog
from training.generator import REFERENCE_TIME, generate
from training.products import ALWAYS_IN_STOCK, generate_catalog
from training.schema import IMPRESSION_COLUMNS, LABEL, NOTEBOOK_COLUMNS, PREVIOUS_COLUMNS
from training.settings import GenerationSettings

ROWS = 3_000


def run(out: Path, seed: int = 7, rows: int = ROWS, notebook: bool = False) -> dict[str, object]:
    return generate(
        GenerationSettings(rows=rows, seed=seed, out_dir=out, notebook=notebook, progress=False)
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    run(out, notebook=True)
    return out


@pytest.fixture(scope="module")
def impressions(generated: Path) -> pd.DataFrame:
    return pd.read_csv(generated / "impressions.csv", dtype={"session_id": str})


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    generated: Path, tmp_path: Path
) -> None:
    run(tmp_path / "again", notebook=True)
    for name in ("impressions.csv", "catalog.csv", "sessions.csv", "generation.json"):
        assert (tmp_path / "again" / name).read_bytes() == (generated / name).read_bytes(), name
    run(tmp_path / "other", seed=8)
    other = (tmp_path / "other" / "impressions.csv").read_bytes()
    assert other != (generated / "impressions.csv").read_bytes()


def test_columns_and_row_count_are_exact(impressions: pd.DataFrame, generated: Path) -> None:
    assert tuple(impressions.columns) == IMPRESSION_COLUMNS
    assert len(impressions) == ROWS
    sessions = pd.read_csv(generated / "sessions.csv")
    assert tuple(sessions.columns) == NOTEBOOK_COLUMNS
    assert len(sessions) == impressions["session_id"].nunique()
    assert not list(generated.glob(".*.tmp"))  # temp files were renamed into place


def test_values_are_in_their_domains(impressions: pd.DataFrame) -> None:
    assert set(impressions["device_type"]) == set(DEVICES)
    assert set(impressions["traffic_source"]) == set(TRAFFIC_SOURCES)
    assert set(impressions[LABEL]) == {0, 1}
    assert set(impressions["clicked_product_image"]) <= {0, 1}
    assert impressions["scroll_depth"].between(0, 1).all()
    assert (impressions[["current_price", "rec_price"]] > 0).all().all()
    assert (impressions[["products_in_cart", "time_on_page_sec"]] >= 0).all().all()
    assert impressions["session_id"].str.fullmatch(r"S\d{7}").all()
    assert impressions["customer_id"].str.fullmatch(r"C\d{6}").all()


def test_previous_products_are_none_exactly_when_not_yet_viewed(impressions: pd.DataFrame) -> None:
    viewed = impressions["products_viewed_count"]
    for k, column in enumerate(PREVIOUS_COLUMNS, start=1):
        absent = impressions[column] == "NONE"
        assert (absent == (viewed <= k)).all(), column
        assert impressions.loc[~absent, column].str.fullmatch(r"PROD\d{4}").all()


def test_timestamps_are_before_the_fixed_reference(impressions: pd.DataFrame) -> None:
    stamps = pd.to_datetime(impressions["timestamp"], utc=True)
    reference = pd.Timestamp(str(REFERENCE_TIME), tz="UTC")
    assert (stamps < reference).all()
    assert (stamps > reference - pd.Timedelta(days=92)).all()


def test_a_page_never_recommends_its_own_product_or_one_product_twice(
    impressions: pd.DataFrame,
) -> None:
    assert (impressions["rec_product_id"] != impressions["current_product_id"]).all()
    pages = impressions.groupby(["session_id", "timestamp"])["rec_product_id"]
    assert (pages.nunique() == pages.size()).all()
    assert pages.size().between(1, 5).all()


def test_candidates_carry_their_catalog_category_and_price(
    impressions: pd.DataFrame, generated: Path
) -> None:
    catalog = pd.read_csv(generated / "catalog.csv").set_index("product_id")
    assert (
        impressions["rec_category"]
        == catalog.loc[impressions["rec_product_id"], "category"].to_numpy()
    ).all()
    assert np.allclose(
        impressions["rec_price"], catalog.loc[impressions["rec_product_id"], "price"]
    )
    assert np.allclose(
        impressions["current_price"], catalog.loc[impressions["current_product_id"], "price"]
    )


def test_catalog_has_complement_structure_and_story_items_in_stock() -> None:
    frame = generate_catalog(seed=7)
    catalog = Catalog.from_frame(frame)  # the shared loader accepts it
    assert tuple(frame.columns) == CATALOG_COLUMNS
    assert len(catalog) == 200
    assert list(frame["product_id"][:2]) == ["PROD0001", "PROD0002"]
    assert {"Electronics", "Home", "Sports"} <= set(frame["category"])
    assert frame["category"].nunique() >= 6
    camping = set(frame.loc[frame["subcategory"] == "Camping", "name"])
    assert set(ALWAYS_IN_STOCK) <= camping
    assert {"Road Bike", "Helmet", "Bike Lights"} <= set(frame["name"])
    assert {"Laptop", "Wireless Mouse", "Laptop Bag"} <= set(frame["name"])
    assert "Winter Jacket" in set(frame.loc[frame["subcategory"] == "Winter Clothing", "name"])
    story = frame[frame["name"].isin(ALWAYS_IN_STOCK)]
    assert len(story) == len(ALWAYS_IN_STOCK) and story["in_stock"].all()
    assert 0.8 <= frame["in_stock"].mean() <= 0.97
    assert frame["name"].is_unique


def test_popularity_is_zipf_like() -> None:
    popularity = np.sort(generate_catalog(seed=7)["popularity"].to_numpy())[::-1]
    assert popularity[0] == 1.0
    # rank r has about r ** -0.9 of the top product's popularity
    assert popularity[9] == pytest.approx(10**-0.9, rel=0.01)
    assert popularity[:20].sum() > 0.4 * popularity.sum()


def test_calibrated_offsets_hit_the_notebook_segment_rates() -> None:
    world = World.from_catalog(generate_catalog(seed=3))
    rng = np.random.default_rng(0)
    sample = simulate(world, Customers.draw(world, 2_000, rng), np.arange(10_000), rng)
    offsets = fit_offsets([sample])
    p = 1 / (
        1
        + np.exp(-(sample.logit + offsets.device[sample.device] + offsets.traffic[sample.traffic]))
    )
    for d, name in enumerate(DEVICES):
        assert p[sample.device == d].mean() == pytest.approx(TARGET_DEVICE[name], abs=0.002)
    for t, name in enumerate(TRAFFIC_SOURCES):
        assert p[sample.traffic == t].mean() == pytest.approx(TARGET_TRAFFIC[name], abs=0.002)


def test_intent_matching_candidates_in_engaged_sessions_are_clicked_far_above_70_percent() -> None:
    world = World.from_catalog(generate_catalog(seed=7))
    rng = np.random.default_rng(1)
    page = simulate(world, Customers.draw(world, 5_000, rng), np.arange(20_000), rng)
    offsets = fit_offsets([page])
    clicked = page.clicked(offsets.device, offsets.traffic)
    sub = world.product_subcategory
    complement = sub[page.candidate] == sub[page.current]
    engaged = (page.time_on_page_sec >= 60) & (page.scroll_depth >= 0.6)
    assert clicked[complement & engaged].mean() > 0.8
    assert clicked[~complement].mean() < 0.4


def test_generation_report_counts_customers_and_rates(generated: Path) -> None:
    report = json.loads((generated / "generation.json").read_text())
    assert report["rows"] == ROWS
    assert report["customers"] == ROWS // 5
    assert report["sessions"] >= report["customers"]
    assert set(report["calibrated_offsets"]["device"]) == set(DEVICES)


def test_bad_row_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows must be positive"):
        run(tmp_path, rows=0)
