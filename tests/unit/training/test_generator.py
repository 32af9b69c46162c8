"""The data generator: determinism, the schemas, multi-page sessions, clicks and the ceiling."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reco import CATALOG_COLUMNS
from training.behaviour import (
    DEVICES,
    EXAMINATION,
    TRAFFIC_SOURCES,
    Customers,
    World,
    click_probability,
    simulate,
)
from training.catalog import catalog_from_frame
from training.dataset import load_dataset
from training.generator import REFERENCE_TIME, ROWS_PER_CUSTOMER, generate
from training.marginals import TARGET_DEVICE, TARGET_TRAFFIC, Offsets, fit_offsets
from training.pages import page_views
from training.products import ALWAYS_IN_STOCK, generate_catalog
from training.schema import (
    GENERATED_COLUMNS,
    GENERATED_NOTEBOOK_COLUMNS,
    LABEL,
    PREVIOUS_COLUMNS,
    SIM_CONTEXT_FREE,
    SIM_FAVOURITE,
    SIM_INTENT,
    SIM_PROBABILITY,
)
from training.settings import GenerationSettings
from training.truth import Truth

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
    assert tuple(impressions.columns) == GENERATED_COLUMNS
    assert len(impressions) == ROWS
    sessions = pd.read_csv(generated / "sessions.csv")
    assert tuple(sessions.columns) == GENERATED_NOTEBOOK_COLUMNS
    assert not list(generated.glob(".*.tmp"))  # temp files were renamed into place


def test_the_notebook_export_has_exactly_the_impressions_click_rates(
    impressions: pd.DataFrame, generated: Path
) -> None:
    sessions = pd.read_csv(generated / "sessions.csv", dtype={"session_id": str})
    assert len(sessions) == len(impressions)  # one row per recommendation shown
    pd.testing.assert_frame_equal(
        sessions, impressions.loc[:, list(GENERATED_NOTEBOOK_COLUMNS)], check_dtype=False
    )
    assert not sessions.duplicated().any()  # the slot tells rows of one page view apart
    for column in (None, "device_type", "traffic_source"):
        by = (
            (lambda f: f[LABEL].mean())
            if column is None
            else (lambda f, c=column: f.groupby(c)[LABEL].mean().to_dict())
        )
        assert by(sessions) == by(impressions), column


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
    catalog = catalog_from_frame(frame)  # the shared loader accepts it
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
    zero = Offsets.zero()
    customers = Customers.draw(world, 2_000, rng)
    sample = simulate(world, customers, np.arange(10_000), rng, zero.device, zero.traffic)
    offsets = fit_offsets([sample])
    p = click_probability(
        sample.logit, sample.slot, sample.device, sample.traffic, offsets.device, offsets.traffic
    )
    # Desktop sessions are longer, so the row-weighted targets are not exactly consistent:
    # the fit is least squares, within a few tenths of a point of every target.
    for d, name in enumerate(DEVICES):
        assert p[sample.device == d].mean() == pytest.approx(TARGET_DEVICE[name], abs=0.004)
    for t, name in enumerate(TRAFFIC_SOURCES):
        assert p[sample.traffic == t].mean() == pytest.approx(TARGET_TRAFFIC[name], abs=0.004)


def test_intent_matching_candidates_in_engaged_sessions_are_clicked_far_above_70_percent() -> None:
    world = World.from_catalog(generate_catalog(seed=7))
    rng = np.random.default_rng(1)
    customers = Customers.draw(world, 5_000, rng)
    zero = Offsets.zero()
    offsets = fit_offsets([simulate(world, customers, np.arange(5_000), rng, *vars(zero).values())])
    rows = simulate(world, customers, np.arange(20_000), rng, offsets.device, offsets.traffic)
    sub = world.product_subcategory
    complement = sub[rows.candidate] == sub[rows.current]
    engaged = (rows.time_on_page_sec >= 60) & (rows.scroll_depth >= 0.6) & (rows.slot == 0)
    assert rows.clicked[complement & engaged].mean() > 0.8
    assert rows.clicked[~complement].mean() < 0.4


def test_sessions_are_ordered_page_views_that_follow_clicks(impressions: pd.DataFrame) -> None:
    pages = impressions.drop_duplicates(["session_id", "timestamp"]).reset_index(drop=True)
    for _, views in pages.groupby("session_id"):
        count = views["products_viewed_count"].to_numpy()
        assert (count == np.arange(1, len(views) + 1)).all()  # every page view is logged
        assert (pd.to_datetime(views["timestamp"]).diff().dropna() > pd.Timedelta(0)).all()
        current = views["current_product_id"].tolist()
        for k, column in enumerate(PREVIOUS_COLUMNS, start=1):
            assert views[column].tolist()[k:] == current[:-k]  # the k-th product before
    assert pages.groupby("session_id").size().max() >= 8  # some sessions are long
    # The first clicked slot of a page view is where the shopper goes next.
    clicked = impressions[impressions[LABEL] == 1].sort_values(["session_id", "timestamp", "slot"])
    first = clicked.drop_duplicates(["session_id", "timestamp"]).set_index(
        ["session_id", "timestamp"]
    )["rec_product_id"]
    following = pages.groupby("session_id").shift(-1)
    nexts = pd.Series(
        following["current_product_id"].to_numpy(),
        index=pages.set_index(["session_id", "timestamp"]).index,
    )
    led = first.index.intersection(nexts.dropna().index)
    assert len(led) > 100
    assert (first.loc[led] == nexts.loc[led]).all()


def test_clicks_fall_with_the_slot_as_the_examination_model_says(generated: Path) -> None:
    report = json.loads((generated / "generation.json").read_text())
    assert report["simulator"]["examination"] == list(EXAMINATION)
    assert "sim_" in report["simulator"]["note"] and "real data" in report["simulator"]["note"]
    ctr = [report["by_slot"][str(k)]["ctr"] for k in range(len(EXAMINATION))]
    assert ctr[0] > ctr[2] > ctr[4]
    assert list(EXAMINATION) == sorted(EXAMINATION, reverse=True) and EXAMINATION[0] == 1.0


def test_the_ceiling_columns_are_the_simulators_own_probabilities(
    impressions: pd.DataFrame, generated: Path
) -> None:
    data = load_dataset(generated)
    frame = data.frame
    for column in (SIM_PROBABILITY, SIM_CONTEXT_FREE):
        assert frame[column].between(0, 1).all(), column
    assert frame[SIM_PROBABILITY].max() <= 1.0 and frame[SIM_PROBABILITY].std() > 0.1
    world = World.from_catalog(data.catalog)
    assert set(frame[SIM_INTENT]) <= set(world.subcategories)
    assert set(frame[SIM_FAVOURITE]) <= set(world.categories)
    # The recorded probability is what the simulator's click rule gives, recomputed from the
    # hidden state and the offsets in generation.json (rounded to 6 decimals when written).
    truth = Truth.of(frame, data.catalog, data.generation)
    assert isinstance(truth, Truth)
    assert truth.agreement(frame, page_views(frame)) < 2e-6
    # Clicks were drawn from it: their rate is its mean, higher where it is higher.
    p, y = frame[SIM_PROBABILITY], frame[LABEL]
    assert y.mean() == pytest.approx(p.mean(), abs=3 * np.sqrt((p * (1 - p)).sum()) / len(p))
    assert y[p > p.median()].mean() > y[p <= p.median()].mean() + 0.25
    # The context-free ceiling is one number per (candidate, favourite category).
    per_cell = frame.groupby(["rec_product_id", SIM_FAVOURITE])[SIM_CONTEXT_FREE].nunique()
    assert (per_cell == 1).all()


def test_real_data_have_no_ceiling(impressions: pd.DataFrame, generated: Path) -> None:
    data = load_dataset(generated)
    real = data.frame.drop(columns=[SIM_PROBABILITY, SIM_INTENT])
    reason = Truth.of(real, data.catalog, data.generation)
    assert isinstance(reason, str) and "not generated" in reason
    stale = {**data.generation, "simulator": {**data.generation["simulator"], "version": 1}}
    assert "version 1" in str(Truth.of(data.frame, data.catalog, stale))


def test_generation_report_counts_customers_and_rates(generated: Path) -> None:
    report = json.loads((generated / "generation.json").read_text())
    assert report["rows"] == ROWS
    assert report["customers"] <= round(ROWS / ROWS_PER_CUSTOMER)
    assert report["sessions"] > 1.5 * report["customers"]  # customers come back
    assert report["page_views"] > 2 * report["sessions"]
    assert set(report["calibrated_offsets"]["device"]) == set(DEVICES)
    assert max(report["simulator"]["calibration_rounds_max_change"][-2:]) < 0.05


def test_bad_row_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows must be positive"):
        run(tmp_path, rows=0)


# sha256 of (impressions.csv, generation.json) main wrote for 2,000 rows, seed 7, before the
# catalog grew a long tail and the simulator's "already seen" stopped being a dense table.
UNCHANGED_SHA256 = {
    200: (
        "7b5a9a8ea05679d298407d8feb950c53c80896426196260bcb0a3781b79d9ca0",
        "cacfd768f7b55eac943864a976435a81f138fd0f97fb80401c53ebcbf6373db4",
    ),
    600: (
        "91b61189db4722baa90184ab4fd6a12c498ff20657152ce63004f9e613e2e7aa",
        "92f4c149a38e0e23958a4cd51fafb41dda3930485207ea1a14ca0e7c7fd1aca1",
    ),
}


@pytest.mark.parametrize("n_products", sorted(UNCHANGED_SHA256))
def test_generated_data_up_to_the_classic_catalog_are_byte_identical_to_before(
    tmp_path: Path, n_products: int
) -> None:
    generate(GenerationSettings(2_000, 7, tmp_path, n_products=n_products, progress=False))
    digests = tuple(
        hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        for name in ("impressions.csv", "generation.json")
    )
    assert digests == UNCHANGED_SHA256[n_products]


def test_a_long_tail_catalog_generates_sessions_over_it(tmp_path: Path) -> None:
    report = generate(GenerationSettings(2_000, 7, tmp_path, n_products=20_000, progress=False))
    assert report["products"] == 20_000 and report["rows"] == 2_000
    catalog = pd.read_csv(tmp_path / "catalog.csv")
    rows = pd.read_csv(tmp_path / "impressions.csv")
    assert set(rows["rec_product_id"]) <= set(catalog["product_id"])
    assert rows["rec_product_id"].str.fullmatch(r"PROD\d{5}").all()
    # shoppers reach far into the tail, yet the popular head is shown most
    assert rows["rec_product_id"].nunique() > 500
    shown = rows["rec_product_id"].value_counts()
    popularity = catalog.set_index("product_id")["popularity"]
    assert popularity[shown.index[:20]].mean() > 20 * popularity.mean()
    assert 0.40 <= report["click_rate"] <= 0.48
