"""The catalog generator at any size: unchanged up to its classic capacity, a long tail above."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reco import CATALOG_COLUMNS
from training.catalog import catalog_from_frame
from training.products import (
    ALWAYS_IN_STOCK,
    ASSORTMENT,
    CLASSIC_CAPACITY,
    IN_STOCK_SHARE,
    MODELS,
    N_BASE,
    ZIPF_EXPONENT,
    generate_catalog,
    product_ids,
)
from training.settings import MAX_PRODUCTS

# sha256 of catalog.csv as main's generator wrote it before the long tail existed (seed 7):
# the default catalog, the model trained on it and issue 12's numbers must never move.
CLASSIC_SHA256 = {
    N_BASE: "756d2b3a7f6c7d058a213f28672a8b012fa8e202d782be8e031055e4b81dc34e",
    200: "e9f09caea27bf762cf3d451f5149b90e44fad0b68c7efe7ad5486a17ca275e5e",
    600: "02c5cf3fa29f6e9fded1c51630662663a0484fc49602387b9ee5e99888d2e525",
    CLASSIC_CAPACITY: "d5777338579254ec9f28b1160b18864a38f54c4ce88eaeb006ef221ceb1b1f65",
}
BASE_NAMES = [name for _, _, items in ASSORTMENT for name, _, _ in items]
LARGE = 20_000


def catalog_sha256(frame: pd.DataFrame) -> str:
    """Digest of the frame as the generator writes catalog.csv."""
    return hashlib.sha256(frame.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    return generate_catalog(seed=7, n_products=LARGE)


@pytest.mark.parametrize("n_products", sorted(CLASSIC_SHA256))
def test_catalogs_up_to_the_classic_capacity_are_byte_identical_to_before(n_products: int) -> None:
    assert CLASSIC_CAPACITY == 615  # 123 base items and their four variants each
    assert catalog_sha256(generate_catalog(7, n_products)) == CLASSIC_SHA256[n_products]


def test_a_large_catalog_is_deterministic_in_its_seed(large: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_catalog(seed=7, n_products=LARGE), large)
    assert not generate_catalog(seed=8, n_products=LARGE)["price"].equals(large["price"])


def test_a_large_catalog_has_unique_sorted_ids_and_unique_readable_names(
    large: pd.DataFrame,
) -> None:
    assert tuple(large.columns) == CATALOG_COLUMNS
    assert len(catalog_from_frame(large)) == LARGE  # the shared loader accepts it
    ids = large["product_id"]
    assert ids.iloc[0] == "PROD00001" and ids.iloc[-1] == "PROD20000"
    assert ids.is_unique and ids.is_monotonic_increasing
    assert large["name"].is_unique
    assert {"Trailhead Tent", "Summit Tent Pro"} <= set(large["name"])  # brand, item, line


def test_every_subcategory_is_present_with_its_category_and_grouped(large: pd.DataFrame) -> None:
    expected = {(cat, sub) for cat, sub, _ in ASSORTMENT}
    assert set(zip(large["category"], large["subcategory"], strict=True)) == expected
    runs = (large["subcategory"] != large["subcategory"].shift()).sum()
    assert runs == len(ASSORTMENT)  # each subcategory's products are one run of ids
    sizes = large.groupby("subcategory").size()
    assert sizes.min() > 100


def test_base_items_keep_plain_names_stock_and_the_head_of_their_subcategory(
    large: pd.DataFrame,
) -> None:
    base = large[large["name"].isin(BASE_NAMES)]
    assert sorted(base["name"]) == sorted(BASE_NAMES)
    assert base["in_stock"].all()
    assert set(ALWAYS_IN_STOCK) <= set(base.loc[base["subcategory"] == "Camping", "name"])
    is_base = large["name"].isin(BASE_NAMES)
    for sub, group in large.groupby("subcategory"):
        head = group.loc[is_base[group.index], "popularity"].min()
        tail = group.loc[~is_base[group.index], "popularity"].max()
        assert head > tail, sub


def test_a_large_catalog_prices_models_around_their_item_and_stocks_as_before(
    large: pd.DataFrame,
) -> None:
    prices = large["price"].to_numpy()
    assert np.allclose((prices + 0.01) % 1, 0) and prices.min() >= 0.99  # shop prices: .99
    ranges = {name: (lo, hi) for _, _, items in ASSORTMENT for name, lo, hi in items}
    for name in ("Tent", "Laptop", "Jump Rope"):
        lo, hi = ranges[name]
        lines = "|".join(m for m, _ in MODELS if m)
        of_item = large["name"].str.fullmatch(rf"\w+ {name}( ({lines}))?( \d+)?")
        models = large.loc[of_item, "price"]
        assert len(models) > 20, name
        assert lo * 0.4 <= models.median() <= hi * 1.6, name
    assert large["in_stock"].mean() == pytest.approx(IN_STOCK_SHARE, abs=0.01)


def test_large_catalog_popularity_is_zipf_over_the_whole_catalog(large: pd.DataFrame) -> None:
    popularity = np.sort(large["popularity"].to_numpy())[::-1]
    assert popularity[0] == 1.0 and popularity[-1] > 0
    assert (np.diff(popularity) <= 0).all()
    rank = np.arange(1, LARGE + 1)
    slope = np.polyfit(np.log(rank), np.log(popularity), 1)[0]
    assert slope == pytest.approx(-ZIPF_EXPONENT, abs=0.01)


def test_the_largest_catalog_is_made_whole() -> None:
    frame = generate_catalog(7, MAX_PRODUCTS)
    assert len(frame) == MAX_PRODUCTS and frame["product_id"].is_unique
    assert frame["name"].is_unique and "Trailhead Tent Pro 2" in set(frame["name"])
    # the millionth rank still has a positive popularity (the simulator takes its log)
    assert frame["popularity"].min() > 0


def test_ids_widen_only_when_the_catalog_needs_it() -> None:
    assert list(product_ids(9_999)[[0, -1]]) == ["PROD0001", "PROD9999"]
    assert list(product_ids(10_000)[[0, -1]]) == ["PROD00001", "PROD10000"]
    assert list(product_ids(MAX_PRODUCTS)[[0, -1]]) == ["PROD0000001", "PROD1000000"]


@pytest.mark.parametrize("n_products", [0, N_BASE - 1, MAX_PRODUCTS + 1])
def test_sizes_it_cannot_make_are_refused_naming_the_range(n_products: int) -> None:
    message = f"n_products must be between {N_BASE} .* and {MAX_PRODUCTS:,}, got {n_products}"
    with pytest.raises(ValueError, match=message):
        generate_catalog(7, n_products)


def test_the_cli_reports_a_refused_size_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "training", "generate", "--rows", "100", "--products", "50",
         "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: n_products must be between {N_BASE} (one per base item) and "
        f"{MAX_PRODUCTS:,}, got 50"
    ]
    assert not out.exists()  # refused before anything is written
