"""Training on a small generated set: the bundle's contents, the probe, refusals, both schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from reco import (
    FEATURE_NAMES,
    FEATURE_SETS,
    MANIFEST_FILE,
    REQUIRED_KEYS,
    SESSION_FEATURES,
    UNKNOWN_CODE,
    Encodings,
    load_tables,
    probe_from_manifest,
    read_manifest,
    verify_files,
)
from training import catalog_ranking
from training.affinity import affinity_table
from training.catalog import tables_from_frame
from training.cli import EXIT_BAD_DATA, EXIT_BUNDLE_EXISTS, main
from training.dataset import load_dataset
from training.generator import generate
from training.pipeline import BundleExistsError, feature_set_of, train
from training.schema import DataError
from training.settings import DEFAULT_AFFINITY_TOP_K, GenerationSettings, TrainSettings
from training.split import split_rows

BUNDLE_FILES = {
    "model.txt",
    "catalog.csv",
    "affinity_indptr.npy",
    "affinity_related.npy",
    "affinity_strength.npy",
    "train_sample.npy",
    "metrics.json",
    "report.md",
    "predictions.csv",
    "roc.png",
    "precision_recall.png",
    "ctr_by_threshold.png",
    "coverage_ctr.png",
    "reliability.png",
    "feature_importance.png",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    generate(GenerationSettings(rows=3_000, seed=11, out_dir=out, notebook=True, progress=False))
    return out


@pytest.fixture(scope="module")
def bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "20261122T000000Z"
    train(TrainSettings(data=data_dir, out=out, feature_set="candidate"))
    return out


@pytest.fixture(scope="module")
def session_bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "notebook"
    train(TrainSettings(data=data_dir / "sessions.csv", out=out))
    return out


def test_bundle_holds_every_file_hashed_in_the_manifest(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    assert set(REQUIRED_KEYS) <= set(manifest)
    assert set(manifest["files"]) == BUNDLE_FILES
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES | {MANIFEST_FILE}
    verify_files(bundle, manifest["files"], BUNDLE_FILES)
    assert manifest["version"] == bundle.name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created_at"])
    assert manifest["feature_set"] == "candidate"
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["default_threshold"] == 0.7
    encodings = Encodings.from_manifest(manifest["encodings"])
    assert encodings.device_type.values == ("Desktop", "Mobile", "Tablet")
    training = manifest["training"]
    assert training["rows"]["train"] + training["rows"]["test"] == 3_000
    assert len(training["data_sha256"]) == 64 and training["lightgbm_version"] == lgb.__version__
    assert training["params"]["max_depth"] == 4 and training["params"]["num_boost_round"] == 100
    assert not list(bundle.parent.glob(".*partial*"))


def test_model_has_100_trees_of_depth_at_most_4(bundle: Path) -> None:
    booster = lgb.Booster(model_file=str(bundle / "model.txt"))
    assert booster.num_trees() == 100
    assert booster.feature_name() == list(FEATURE_NAMES)

    def depth(node: dict[str, object]) -> int:
        if "split_feature" not in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))  # type: ignore[arg-type]

    assert max(depth(t["tree_structure"]) for t in booster.dump_model()["tree_info"]) <= 4


def test_parity_probe_has_nan_unknown_and_threshold_rows_scored_by_lightgbm(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    rows, probabilities = probe_from_manifest(manifest)
    composition = manifest["parity_probe"]["composition"]
    assert 200 <= len(rows) <= 600 and rows.shape[1] == len(FEATURE_NAMES)
    for kind in ("held_out", "nan_injected", "unseen_category", "unknown_product", "on_threshold"):
        assert composition[kind] > 0, kind
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    for name in ("category_enc", "device_enc", "traffic_enc", "rec_category_enc"):
        assert (rows[:, column[name]] == UNKNOWN_CODE).any(), name
    kinds = np.array(manifest["parity_probe"]["kinds"])
    assert len(kinds) == len(rows)
    unknown_product = rows[kinds == "unknown_product"]
    assert np.isnan(unknown_product[:, column["rec_popularity"]]).all()
    assert (unknown_product[:, column["affinity_current"]] == 0).all()
    assert (unknown_product[:, column["affinity_previous"]] == 0).all()
    nan_rows = rows[np.isin(kinds, ["nan_injected", "all_nan"])]
    assert np.isnan(nan_rows).any(axis=1).all() and np.isnan(nan_rows).all(axis=1).sum() == 1
    booster = lgb.Booster(model_file=str(bundle / "model.txt"))
    thresholds = {
        (n["split_feature"], np.float32(n["threshold"]))
        for t in booster.dump_model()["tree_info"]
        for n in _nodes(t["tree_structure"])
    }
    on_split = rows[kinds == "on_threshold"]
    assert all(any((f, row[f]) in thresholds for f in range(len(row))) for row in on_split)
    np.testing.assert_array_equal(booster.predict(rows), probabilities)


def _nodes(node: dict[str, object]) -> list[dict[str, object]]:
    if "split_feature" not in node:
        return []
    return [node, *_nodes(node["left_child"]), *_nodes(node["right_child"])]  # type: ignore[arg-type]


def test_affinity_comes_from_the_training_split_only(bundle: Path, data_dir: Path) -> None:
    data = load_dataset(data_dir)
    split = split_rows(data.frame)
    from_train = affinity_table(data.frame.iloc[split.train])
    catalog, tables = load_tables(bundle)
    expected = tables_from_frame(catalog, from_train, DEFAULT_AFFINITY_TOP_K).affinity
    written = tables.affinity
    assert np.array_equal(written.indptr, expected.indptr)
    assert np.array_equal(written.related, expected.related)
    assert np.array_equal(written.strength, expected.strength)
    # The default catalog keeps every co-viewed pair of the training split (none is cut at k).
    assert len(written) == int((from_train["strength"] != 0).sum())
    assert len(affinity_table(data.frame)) != len(written)  # held-out sessions would add pairs
    held_out_sessions = set(data.frame.iloc[split.test]["session_id"])
    assert held_out_sessions.isdisjoint(data.frame.iloc[split.train]["session_id"])


def test_train_sample_and_predictions(bundle: Path) -> None:
    sample = np.load(bundle / "train_sample.npy")
    manifest = read_manifest(bundle)
    assert sample.dtype == np.float32 and sample.flags.c_contiguous
    assert sample.shape == (manifest["training"]["rows"]["train"], len(FEATURE_NAMES))
    predictions = pd.read_csv(bundle / "predictions.csv")
    assert len(predictions) == manifest["training"]["rows"]["test"]
    assert {"session_id", "rec_product_id", "actual_clicked", "click_probability"} <= set(
        predictions.columns
    )
    assert (predictions["recommend"] == (predictions["click_probability"] >= 0.7)).all()
    catalog, tables = load_tables(bundle)
    assert len(catalog) == 200 and tables.affinity.n_products == 200
    assert isinstance(tables.affinity.strength.base, np.memmap)  # mapped, never read whole


def test_metrics_cover_the_notebook_report_and_both_baselines(bundle: Path) -> None:
    metrics = json.loads((bundle / "metrics.json").read_text())
    for key in ("auc", "accuracy", "baseline_ctr", "ctr_at_threshold", "lift_at_threshold"):
        assert isinstance(metrics[key], float), key
    assert [r["threshold"] for r in metrics["threshold_table"]] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert set(metrics["segments"]) == {"device_type", "traffic_source"}
    assert set(metrics["segments"]["device_type"]) == {"Desktop", "Mobile", "Tablet"}
    for name in ("popularity", "batch"):
        baseline = metrics["baselines"][name]
        assert 0.3 < baseline["auc"] < 0.8
        assert set(baseline["ranking"]) == {"page_views", "hit_rate_at_3", "ndcg_at_3"}
    assert metrics["ranking"]["random_hit_rate_at_3"] < metrics["ranking"]["hit_rate_at_3"]
    assert metrics["live_session_example"]["top"][0]["score"] > 0.5
    report = (bundle / "report.md").read_text()
    assert "batch (context-free)" in report and "![roc](roc.png)" in report


def test_every_headline_number_has_an_interval_and_the_ceiling_is_reported(bundle: Path) -> None:
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["bootstrap"]["unit"] == "session" and metrics["bootstrap"]["replicates"] >= 200
    for ranker, m in metrics["shown"].items():
        for key in ("auc", "log_loss"):
            interval = m[key]
            assert interval["low"] <= interval["value"] <= interval["high"], (ranker, key)
    rankers = set(metrics["shown"])
    assert {"simulator ceiling", "context-free ceiling", "random", "popularity"} <= rankers
    ceiling = metrics["ceiling"]
    assert ceiling["available"] and 0.8 < ceiling["model_auc_fraction"]["value"] < 1.02
    assert set(metrics["equal_coverage"]["ctr"]) == rankers
    catalog = metrics["catalog"]
    assert catalog["page_views"] > 100 and catalog["mean_eligible"] > 150
    assert set(catalog["rankers"]["session-aware model"]) == {
        "share_at_3",
        "share_at_10",
        "recall_at_10",
        "ndcg_at_10",
        "next_recall_at_10",
        "next_reciprocal_rank",
    }
    for segments in metrics["segments"].values():
        for s in segments.values():
            assert s["auc"]["low"] < s["auc"]["value"] < s["auc"]["high"]
    names = [r["feature"] for r in metrics["importance"]]
    assert names == sorted(
        names, key=lambda n: -next(r["gain"] for r in metrics["importance"] if r["feature"] == n)
    )
    assert all(r["splits"] >= 0 for r in metrics["importance"])
    calibration = metrics["calibration"]
    assert 0 < calibration["ece"] < 0.2 and "held_out_ece_after" in calibration["platt"]
    assert calibration["ece_noise_floor"]["median"] < calibration["ece_noise_floor"]["p95"]
    assert metrics["business_projection"].startswith("omitted: the data are generated")
    report = (bundle / "report.md").read_text()
    first = report.split("\n\n")[1]
    assert first.startswith("**These data are GENERATED**") and "of the ceiling" in first
    assert "Business illustration" in report and "+$" not in report
    for heading in ("## Calibration", "## Feature importance", "## Equal coverage"):
        assert heading in report
    manifest = read_manifest(bundle)
    assert 0.8 < manifest["metrics"]["ceiling"]["auc_fraction"] < 1.02


def test_the_sequence_set_trains_a_bundle_the_compiler_can_take(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sequence"
    train(TrainSettings(data=data_dir, out=out, feature_set="sequence", split="time"))
    manifest = read_manifest(out)
    assert manifest["feature_set"] == "sequence"
    assert manifest["feature_names"] == list(FEATURE_SETS["sequence"])
    rows, probabilities = probe_from_manifest(manifest)
    assert rows.shape[1] == len(FEATURE_SETS["sequence"])
    booster = lgb.Booster(model_file=str(out / "model.txt"))
    np.testing.assert_array_equal(booster.predict(rows), probabilities)
    assert "by time" in manifest["training"]["split"]
    params = manifest["training"]["params"]  # tuned for this set (training/model.py, TUNED)
    assert (params["num_boost_round"], params["max_depth"], params["lambda_l2"]) == (400, 3, 10.0)
    assert booster.num_trees() == 400
    report = (out / "report.md").read_text()
    assert "sequence feature set" in report and "not served" not in report


def test_a_platt_step_is_folded_into_the_served_model(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "platt"
    train(TrainSettings(data=data_dir, out=out, calibration="platt", business_projection=True))
    manifest = read_manifest(out)
    step = manifest["calibration"]
    assert step["method"] == "platt" and step["a"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["calibration"]["applied"] is True
    # The probe (what every backend must reproduce) holds the calibrated probabilities.
    rows, probabilities = probe_from_manifest(manifest)
    booster = lgb.Booster(model_file=str(out / "model.txt"))
    np.testing.assert_array_equal(booster.predict(rows), probabilities)
    uncalibrated = train_unfolded(data_dir, tmp_path)
    raw = uncalibrated.predict(rows, raw_score=True)
    np.testing.assert_allclose(
        probabilities, 1 / (1 + np.exp(-(step["a"] * raw + step["b"]))), atol=1e-12
    )
    assert isinstance(metrics["business_projection"], dict)
    assert "+$" in (out / "report.md").read_text()


def train_unfolded(data_dir: Path, tmp_path: Path) -> lgb.Booster:
    out = tmp_path / "plain"
    train(TrainSettings(data=data_dir, out=out, calibration="none"))
    return lgb.Booster(model_file=str(out / "model.txt"))


def test_small_data_are_warned_about_in_the_log_and_the_report(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pd.read_csv(data_dir / "impressions.csv", dtype=str).head(900)
    small = tmp_path / "small"
    small.mkdir()
    frame.to_csv(small / "impressions.csv", index=False)
    (small / "catalog.csv").write_bytes((data_dir / "catalog.csv").read_bytes())
    out = tmp_path / "small-bundle"
    with caplog.at_level("WARNING", logger="training.pipeline"):
        train(TrainSettings(data=small, out=out))
    assert any("only 900 rows" in r.getMessage() for r in caplog.records)
    assert "> **Warning:** only 900 rows" in (out / "report.md").read_text()
    opening = (out / "report.md").read_text().split("\n\n")[1]
    assert "not generated" in opening  # no generation.json beside the copy


def test_existing_bundle_is_never_overwritten(bundle: Path, data_dir: Path) -> None:
    before = (bundle / MANIFEST_FILE).read_bytes()
    with pytest.raises(BundleExistsError, match="immutable"):
        train(TrainSettings(data=data_dir, out=bundle))
    assert main(["train", "--data", str(data_dir), "--out", str(bundle)]) == EXIT_BUNDLE_EXISTS
    assert (bundle / MANIFEST_FILE).read_bytes() == before


def test_refused_data_leaves_no_bundle_behind(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(data_dir / "impressions.csv", dtype=str)
    frame["scroll_depth"] = "3"
    frame.to_csv(bad, index=False)
    out = tmp_path / "artifacts" / "v1"
    with pytest.raises(DataError, match="scroll_depth"):
        train(TrainSettings(data=bad, out=out))
    assert main(["train", "--data", str(bad), "--out", str(out)]) == EXIT_BAD_DATA
    assert not out.exists()
    assert not list((tmp_path / "artifacts").glob("*")) if out.parent.exists() else True


def test_check_command_prints_the_report(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--data", str(data_dir)]) == 0
    printed = capsys.readouterr().out
    assert "data-quality report (candidate schema, 3000 rows)" in printed
    assert "kept 3000 of 3000 rows" in printed


def test_notebook_schema_trains_the_19_feature_session_model(session_bundle: Path) -> None:
    manifest = read_manifest(session_bundle)
    assert manifest["feature_set"] == "session"
    assert manifest["feature_names"] == list(SESSION_FEATURES)
    assert "catalog.csv" not in manifest["files"]
    metrics = json.loads((session_bundle / "metrics.json").read_text())
    assert 0.5 < metrics["auc"] < 1.0
    assert metrics["ranking"].startswith("not applicable")
    # sessions.csv keeps the true probability of each impression: the ceiling is known
    assert metrics["ceiling"]["available"]
    assert metrics["catalog"].startswith("not applicable")
    for name in ("popularity", "batch"):
        assert metrics["baselines"][name].startswith("not applicable")
    assert metrics["live_session_example"].startswith("not applicable")
    rows, probabilities = probe_from_manifest(manifest)
    assert rows.shape[1] == 19 and (rows[:, 0] == UNKNOWN_CODE).any()
    booster = lgb.Booster(model_file=str(session_bundle / "model.txt"))
    np.testing.assert_array_equal(booster.predict(rows), probabilities)
    assert "not applicable" in (session_bundle / "report.md").read_text()


def test_the_notebook_schema_cannot_train_the_sequence_set(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="sequence feature set needs impressions"):
        train(
            TrainSettings(
                data=data_dir / "sessions.csv", out=tmp_path / "x", feature_set="sequence"
            )
        )
    assert not (tmp_path / "x").exists()


def test_bad_settings_are_refused_by_name(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"threshold must be between 0 and 1, got 1\.5"):
        TrainSettings(data=data_dir, out=tmp_path / "x", threshold=1.5)
    assert (
        main(["train", "--data", str(data_dir), "--out", str(tmp_path / "x"), "--threads", "0"])
        == EXIT_BAD_DATA
    )
    assert not (tmp_path / "x").exists()


def test_data_with_one_label_value_is_refused_before_training(
    data_dir: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(data_dir / "impressions.csv", dtype=str)
    frame["recommendation_clicked"] = "0"
    frame.to_csv(tmp_path / "no_clicks.csv", index=False)
    with pytest.raises(DataError, match=r"recommendation_clicked counts \{0: 3000\}"):
        train(TrainSettings(data=tmp_path / "no_clicks.csv", out=tmp_path / "v"))
    assert not (tmp_path / "v").exists()


def test_the_time_split_holds_out_the_sessions_that_started_last(data_dir: Path) -> None:
    frame = load_dataset(data_dir).frame
    split = split_rows(frame, "time")
    started = pd.to_datetime(frame["timestamp"]).groupby(frame["session_id"]).min()
    train_sessions = frame.iloc[split.train]["session_id"].unique()
    test_sessions = frame.iloc[split.test]["session_id"].unique()
    assert set(train_sessions).isdisjoint(test_sessions)
    assert started[test_sessions].min() >= started[train_sessions].max()
    assert abs(len(test_sessions) / started.size - 0.2) < 0.01
    with pytest.raises(DataError, match="needs the timestamp column"):
        split_rows(frame.drop(columns=["timestamp"]), "time")


def test_compare_prints_both_feature_sets_and_their_paired_difference(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "--data", str(data_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2] == "| metric | candidate | sequence | sequence - candidate |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[4:]}
    assert {"AUC (shown slate)", "AUC / ceiling AUC", "whole catalog: share at 10"} <= set(rows)
    cells = rows["AUC (shown slate)"].strip("| ").split(" | ")
    candidate, sequence, gain = (float(c.split()[0]) for c in cells[1:])
    assert gain == pytest.approx(sequence - candidate, abs=1e-4)
    assert "[" in cells[3]  # the difference has its interval


def test_impressions_train_the_sequence_set_by_default_and_notebook_rows_the_session_set(
    data_dir: Path,
) -> None:
    assert feature_set_of(load_dataset(data_dir), None) == "sequence"
    assert feature_set_of(load_dataset(data_dir / "sessions.csv"), None) == "session"
    assert feature_set_of(load_dataset(data_dir), "candidate") == "candidate"


def test_ranking_the_catalog_in_blocks_changes_no_number(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole"
    train(TrainSettings(data=data_dir, out=whole, feature_set="sequence"))
    # three page views per block: sessions (whose earlier pages the sequence set reads) stay whole
    monkeypatch.setattr(catalog_ranking, "BLOCK_CELLS", 3 * 200)
    blocks = tmp_path / "blocks"
    train(TrainSettings(data=data_dir, out=blocks, feature_set="sequence"))
    expected, got = (json.loads((b / "metrics.json").read_text()) for b in (whole, blocks))
    assert got["catalog"] == expected["catalog"]
    assert expected["catalog"]["page_views"] == expected["catalog"]["held_out_page_views"]


def test_a_big_catalog_ranks_a_sample_of_page_views_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    generate(GenerationSettings(3_000, 5, data, n_products=2_000, progress=False))
    monkeypatch.setattr(catalog_ranking, "MAX_CATALOG_CELLS", 2_000 * 40)  # 40 page views
    out = tmp_path / "bundle"
    train(TrainSettings(data=data, out=out, feature_set="candidate"))
    catalog = json.loads((out / "metrics.json").read_text())["catalog"]
    assert catalog["page_views_limit"] == 40 and catalog["max_cells"] == 2_000 * 40
    assert 0 < catalog["page_views"] <= 40 < catalog["held_out_page_views"]
    assert catalog["mean_eligible"] > 1_500
    share = catalog["rankers"]["session-aware model"]["share_at_10"]
    assert share["low"] <= share["value"] <= share["high"]
    assert 0 < catalog["context_free_pages"] <= 5_000
    report = (out / "report.md").read_text()
    assert f"A sample of the {catalog['held_out_page_views']} held-out page views" in report
