"""The default data set end to end via the real CLI: marginals of both exports, the ceiling,
baselines, the camping story."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import pandas as pd
import pytest

from reco import Encodings, load_tables, read_manifest
from training.marginals import TARGET_DEVICE, TARGET_OVERALL, TARGET_TRAFFIC
from training.schema import LABEL
from training.story import CAMPING_STORY, rank_catalog

ROWS, SEED = 15_000, 7  # what `make model` generates
TOLERANCE = 0.02  # two percentage points


def run_cli(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("default")
    data, bundle = root / "data", root / "artifacts" / "20261122T050000Z"
    run_cli(
        "generate",
        *("--rows", str(ROWS), "--seed", str(SEED), "--out", str(data)),
        *("--notebook", "--no-progress"),
    )
    run_cli("train", "--data", str(data), "--out", str(bundle))
    return data, bundle


@pytest.fixture(scope="module")
def metrics(default_run: tuple[Path, Path]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((default_run[1] / "metrics.json").read_text())
    return loaded


@pytest.mark.parametrize("export", ["impressions.csv", "sessions.csv"])
def test_both_exports_reproduce_the_notebook_marginals(
    default_run: tuple[Path, Path], export: str
) -> None:
    rows = pd.read_csv(default_run[0] / export)
    assert len(rows) == ROWS
    assert rows[LABEL].mean() == pytest.approx(TARGET_OVERALL, abs=TOLERANCE)
    by_device = rows.groupby("device_type")[LABEL].mean()
    for device, rate in TARGET_DEVICE.items():
        assert by_device[device] == pytest.approx(rate, abs=TOLERANCE), device
    by_traffic = rows.groupby("traffic_source")[LABEL].mean()
    for source, rate in TARGET_TRAFFIC.items():
        assert by_traffic[source] == pytest.approx(rate, abs=TOLERANCE), source


def test_sessions_span_several_page_views_of_returning_customers(
    default_run: tuple[Path, Path],
) -> None:
    impressions = pd.read_csv(default_run[0] / "impressions.csv")
    pages = impressions.groupby("session_id")["products_viewed_count"].max()
    assert 2.5 <= pages.mean() <= 4.5 and pages.max() >= 10
    sessions_per_customer = impressions.groupby("customer_id")["session_id"].nunique()
    assert 2 <= sessions_per_customer.mean() <= 5


def test_the_report_states_the_data_are_generated_and_the_ceiling(
    default_run: tuple[Path, Path], metrics: dict[str, Any]
) -> None:
    report = (default_run[1] / "report.md").read_text()
    opening = report.split("\n\n")[1]
    assert "These data are GENERATED" in opening and "of the ceiling" in opening
    ceiling = metrics["ceiling"]
    fraction = ceiling["model_auc_fraction"]
    assert fraction["low"] < fraction["value"] < fraction["high"]
    assert 0.85 < fraction["value"] < 1.0
    catalog = metrics["catalog"]["rankers"]
    share = {name: catalog[name]["share_at_10"]["value"] for name in catalog}
    assert share["simulator ceiling"] == 1.0
    assert share["random"] < share["popularity"] < share["session-aware model"] < 1.0
    assert share["context-free ceiling"] < share["session-aware model"]
    assert metrics["business_projection"].startswith("omitted")
    for section in ("## Equal coverage", "## Whole-catalog ranking", "## Calibration"):
        assert section in report, section


def test_session_aware_model_beats_both_baselines(metrics: dict[str, Any]) -> None:
    assert metrics["ranking"]["random_hit_rate_at_3"] < metrics["ranking"]["hit_rate_at_3"]
    model_hit = metrics["ranking"]["hit_rate_at_3"]
    for name in ("popularity", "batch"):
        baseline = metrics["baselines"][name]
        assert metrics["auc"] > baseline["auc"], name
        assert model_hit > baseline["ranking"]["hit_rate_at_3"], name
        assert metrics["ranking"]["ndcg_at_3"] > baseline["ranking"]["ndcg_at_3"], name
    assert metrics["ctr_at_threshold"] > metrics["baseline_ctr"] + 0.2


def test_camping_story_gets_confident_camping_recommendations(
    default_run: tuple[Path, Path],
) -> None:
    """Issue 5's check, done here on the same bundle with the shared feature builder."""
    bundle = default_run[1]
    catalog, tables = load_tables(bundle)
    manifest = read_manifest(bundle)
    encodings = Encodings.from_manifest(manifest["encodings"])
    booster = lgb.Booster(model_file=str(bundle / "model.txt"))
    assert manifest["feature_set"] == "sequence"  # the default bundle's
    variants = [
        CAMPING_STORY,
        # the server may also count the product added to the cart as viewed
        replace(CAMPING_STORY, previous=("Tent", "Hiking Boots")),
        *(replace(CAMPING_STORY, traffic_source=source) for source in TARGET_TRAFFIC),
    ]
    for context in variants:
        ranked = rank_catalog(booster, encodings, catalog, tables, context, manifest["feature_set"])
        top = ranked.head(3)
        confident_camping = top[(top["subcategory"] == "Camping") & (top["score"] >= 0.7)]
        assert len(confident_camping) >= 2, (context, top)
        assert not top["name"].isin(["Sleeping Bag", "Tent"]).any()  # on screen / in the cart
