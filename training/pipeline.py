"""`python -m training train`: check, split, fit, evaluate and write an immutable model bundle."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from training.affinity import affinity_table
from training.baselines import BatchModel, PopularityRanker
from training.bundle import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    TRAIN_SAMPLE_FILE,
    hash_files,
    probe_to_manifest,
    sha256_file,
    write_manifest,
)
from training.catalog import AFFINITY_FILE, CATALOG_FILE, Catalog, ProductTables
from training.dataset import DataSet, load_dataset
from training.features import FEATURE_SETS, Encodings, Vocabulary, features_from_frame
from training.metrics import (
    NOT_APPLICABLE,
    business_projection,
    classification_metrics,
    ranking_metrics,
    segment_metrics,
)
from training.model import NUM_TREES, PARAMS, predict, train_booster
from training.probe import build_probe
from training.report import render_report, write_plots
from training.schema import CANDIDATE_SET, LABEL, TIMESTAMP
from training.settings import TrainSettings
from training.signing import SigningKey
from training.split import SPLIT_SEED, split_rows
from training.story import CAMPING_STORY, rank_catalog

log = logging.getLogger(__name__)

TRAIN_SAMPLE_ROWS = 20_000
SAMPLE_SEED = 42
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PREDICTIONS_FILE = "predictions.csv"
STORY_TOP = 5


class BundleExistsError(FileExistsError):
    """The target bundle directory already exists; bundles are immutable."""


def fit_encodings(train: pd.DataFrame, feature_set: str) -> Encodings:
    """Vocabularies from the training split only (category covers current and candidate)."""
    categories = train["current_category"].dropna().astype(str)
    if feature_set == CANDIDATE_SET:
        categories = pd.concat([categories, train["rec_category"].dropna().astype(str)])
    return Encodings(
        category=Vocabulary.fit(categories.to_numpy()),
        device_type=Vocabulary.fit(train["device_type"].dropna().astype(str).to_numpy()),
        traffic_source=Vocabulary.fit(train["traffic_source"].dropna().astype(str).to_numpy()),
    )


def page_view_keys(frame: pd.DataFrame) -> npt.NDArray[np.str_]:
    """One key per page view: candidates shown together share it."""
    parts = [frame["session_id"].astype(str), frame["current_product_id"].astype(str)]
    parts.append(
        frame[TIMESTAMP].astype(str)
        if TIMESTAMP in frame.columns
        else frame["products_viewed_count"].astype(str)
    )
    key = parts[0]
    for part in parts[1:]:
        key = key + "|" + part
    return key.to_numpy(dtype=str)


@dataclass(frozen=True)
class _Fitted:
    """The trained model and what it was trained with."""

    booster: lgb.Booster
    encodings: Encodings
    catalog: Catalog | None
    tables: ProductTables | None
    affinity: pd.DataFrame | None
    X_train: npt.NDArray[np.float32]
    X_test: npt.NDArray[np.float32]


def _fit(data: DataSet, train: pd.DataFrame, test: pd.DataFrame, threads: int) -> _Fitted:
    encodings = fit_encodings(train, data.feature_set)
    catalog = tables = affinity = None
    if data.feature_set == CANDIDATE_SET:
        assert data.catalog is not None  # load_dataset always supplies one for impressions
        catalog = Catalog.from_frame(data.catalog)
        affinity = affinity_table(train)
        tables = ProductTables.build(catalog, affinity)
    X_train = features_from_frame(train, encodings, catalog, tables, data.feature_set)
    X_test = features_from_frame(test, encodings, catalog, tables, data.feature_set)
    names = FEATURE_SETS[data.feature_set]
    booster = train_booster(X_train, train[LABEL].to_numpy(), names, threads)
    return _Fitted(booster, encodings, catalog, tables, affinity, X_train, X_test)


def _ranker_metrics(
    test: pd.DataFrame, scores: npt.NDArray[np.float64], threshold: float, groups: Any
) -> dict[str, Any]:
    metrics = classification_metrics(test[LABEL].to_numpy(), scores, threshold)
    if groups is not None:
        metrics["ranking"] = ranking_metrics(groups, test[LABEL].to_numpy(), scores)
    return metrics


def evaluate(
    data: DataSet,
    train: pd.DataFrame,
    test: pd.DataFrame,
    fitted: _Fitted,
    settings: TrainSettings,
) -> tuple[dict[str, Any], dict[str, npt.NDArray[np.float64]]]:
    """metrics.json's content and the held-out scores of every ranker (for plots)."""
    y = test[LABEL].to_numpy()
    scores = {"session-aware model": predict(fitted.booster, fitted.X_test)}
    candidate = data.feature_set == CANDIDATE_SET
    groups = page_view_keys(test) if candidate else None
    metrics = _ranker_metrics(test, scores["session-aware model"], settings.threshold, groups)
    if not candidate:
        metrics["ranking"] = NOT_APPLICABLE
    metrics["segments"] = {
        column: segment_metrics(test[column].astype(str), y, scores["session-aware model"])
        for column in ("device_type", "traffic_source")
    }
    baselines: dict[str, Any] = {}
    if candidate:
        assert data.catalog is not None
        scores["popularity"] = PopularityRanker.fit(train).score(test)
        batch = BatchModel.fit(train, data.catalog, fitted.encodings, settings.num_threads)
        scores["batch (context-free)"] = batch.score(test)
        baselines["popularity"] = _ranker_metrics(
            test, scores["popularity"], settings.threshold, groups
        )
        baselines["batch"] = _ranker_metrics(
            test, scores["batch (context-free)"], settings.threshold, groups
        )
    else:
        reason = f"{NOT_APPLICABLE}: the notebook schema has no candidate product"
        baselines = {"popularity": reason, "batch": reason}
    metrics["baselines"] = baselines
    metrics["business_projection"] = business_projection(
        metrics["baseline_ctr"], metrics["ctr_at_threshold"], settings.business
    )
    return metrics, scores


def live_session_example(fitted: _Fitted) -> dict[str, Any] | str:
    """The camping story scored over the catalog, when the catalog has its products."""
    if fitted.catalog is None or fitted.tables is None:
        return f"{NOT_APPLICABLE}: no catalog"
    story = CAMPING_STORY
    try:
        ranked = rank_catalog(
            fitted.booster, fitted.encodings, fitted.catalog, fitted.tables, story
        )
    except ValueError as exc:  # a user catalog without the story's products
        return f"{NOT_APPLICABLE}: {exc}"
    return {
        "description": (
            f"A {story.device_type.lower()} shopper ({story.traffic_source}) viewed "
            f"{', '.join(story.previous)}, has {', '.join(story.in_cart)} in the cart and now "
            f"views {story.current} ({story.time_on_page_sec:g} s on the page, scroll "
            f"{story.scroll_depth:g}, image clicked, {story.session_length_mins:g} min, "
            f"{story.products_viewed_count:g} products viewed). Eligible: in stock, not in the "
            "cart, not on screen."
        ),
        "top": ranked.head(STORY_TOP).to_dict(orient="records"),
    }


def _predictions(
    test: pd.DataFrame, scores: npt.NDArray[np.float64], threshold: float
) -> pd.DataFrame:
    """The notebook-style export of held-out predictions."""
    columns = [
        c
        for c in (
            "session_id",
            "customer_id",
            "current_product_id",
            "rec_product_id",
            "device_type",
            "traffic_source",
        )
        if c in test.columns
    ]
    out = test.loc[:, columns].copy()
    out["actual_clicked"] = test[LABEL].to_numpy()
    out["click_probability"] = np.round(scores, 6)
    out["recommend"] = (scores >= threshold).astype(int)
    return out


def _importance(booster: lgb.Booster) -> dict[str, float]:
    gains = booster.feature_importance(importance_type="gain")
    return {n: float(g) for n, g in zip(booster.feature_name(), gains, strict=True)}


def _jsonable(value: Any) -> Any:
    """Replaces non-finite floats (JSON has none) with None, recursively."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def train(settings: TrainSettings, key: SigningKey | None = None) -> dict[str, Any]:
    """Runs the whole training and writes the bundle at settings.out, its manifest signed with
    `key` when one is given; returns the manifest."""
    out = settings.out
    if out.exists():
        raise BundleExistsError(f"{out} already exists; bundles are immutable, choose a new --out")
    started = time.perf_counter()
    data = load_dataset(settings.data, settings.max_bad_fraction)
    log.info("data quality:\n%s", data.quality.to_text())
    split = split_rows(data.frame, data.feature_set)
    train_part = data.frame.iloc[split.train].reset_index(drop=True)
    test_part = data.frame.iloc[split.test].reset_index(drop=True)
    fitted = _fit(data, train_part, test_part, settings.num_threads)
    trained_at = time.perf_counter()
    metrics, scores = evaluate(data, train_part, test_part, fitted, settings)
    metrics.update(
        feature_set=data.feature_set,
        rows={
            "input": data.quality.input_rows,
            "clean": len(data.frame),
            "train": len(train_part),
            "test": len(test_part),
        },
        data_quality=data.quality.to_dict(),
        live_session_example=live_session_example(fitted),
    )
    log.info(
        "held-out AUC %s, CTR at %s: %s",
        metrics["auc"],
        settings.threshold,
        metrics["ctr_at_threshold"],
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    staging.chmod(0o755)  # mkdtemp makes it owner-only; a bundle is read by other services
    try:
        manifest = _write_bundle(
            staging,
            out.name,
            data,
            split.description,
            test_part,
            fitted,
            metrics,
            scores,
            settings,
            key,
        )
        log.info(
            "load + check + fit %.1f s, total %.1f s",
            trained_at - started,
            time.perf_counter() - started,
        )
        if out.exists():  # another writer won the race: never replace a bundle
            raise BundleExistsError(f"{out} appeared while training; bundles are immutable")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("bundle written: %s", out)
    return manifest


def _write_bundle(
    staging: Path,
    version: str,
    data: DataSet,
    split_description: str,
    test_part: pd.DataFrame,
    fitted: _Fitted,
    metrics: dict[str, Any],
    scores: dict[str, npt.NDArray[np.float64]],
    settings: TrainSettings,
    key: SigningKey | None,
) -> dict[str, Any]:
    """Writes every bundle file into `staging`, the manifest (and its signature) last; returns
    the manifest."""
    fitted.booster.save_model(str(staging / MODEL_FILE))
    files = [MODEL_FILE]
    if fitted.catalog is not None and fitted.affinity is not None:
        fitted.catalog.to_frame().to_csv(staging / CATALOG_FILE, index=False, lineterminator="\n")
        fitted.affinity.to_csv(staging / AFFINITY_FILE, index=False, lineterminator="\n")
        files += [CATALOG_FILE, AFFINITY_FILE]
    rng = np.random.default_rng(SAMPLE_SEED)
    n_sample = min(TRAIN_SAMPLE_ROWS, len(fitted.X_train))
    sample = fitted.X_train[np.sort(rng.choice(len(fitted.X_train), n_sample, replace=False))]
    np.save(staging / TRAIN_SAMPLE_FILE, np.ascontiguousarray(sample, dtype=np.float32))
    files.append(TRAIN_SAMPLE_FILE)

    y_test = test_part[LABEL].to_numpy()
    files += write_plots(staging, y_test, scores, _importance(fitted.booster))
    _predictions(test_part, scores["session-aware model"], settings.threshold).to_csv(
        staging / PREDICTIONS_FILE, index=False, lineterminator="\n"
    )
    files.append(PREDICTIONS_FILE)
    metrics = _jsonable(metrics)
    (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    files.append(METRICS_FILE)

    training_info = {
        "data_path": str(data.csv_path),
        "data_sha256": sha256_file(data.csv_path),
        "catalog_source": data.catalog_source,
        "rows": metrics["rows"],
        "split": split_description,
        "seed": {"split": SPLIT_SEED, "model": PARAMS["seed"], "train_sample": SAMPLE_SEED},
        "params": {**PARAMS, "num_boost_round": NUM_TREES, "num_threads": settings.num_threads},
        "lightgbm_version": lgb.__version__,
        "data_quality": metrics["data_quality"],
    }
    info = {"version": version, "data": str(data.csv_path), "split": split_description}
    (staging / REPORT_FILE).write_text(render_report(metrics, info))
    files.append(REPORT_FILE)

    probe = build_probe(
        fitted.booster,
        test_part,
        fitted.X_test,
        data.feature_set,
        fitted.encodings,
        fitted.catalog,
        fitted.tables,
    )
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feature_set": data.feature_set,
        "feature_names": list(FEATURE_SETS[data.feature_set]),
        "encodings": fitted.encodings.to_manifest(),
        "default_threshold": settings.threshold,
        "parity_probe": {
            **probe_to_manifest(probe.rows, probe.probabilities),
            "composition": probe.composition(),
            "kinds": probe.kinds,
        },
        "training": training_info,
        "metrics": {
            key: metrics[key]
            for key in ("auc", "accuracy", "baseline_ctr", "ctr_at_threshold", "lift_at_threshold")
        },
        "files": hash_files(staging, files),
    }
    assert MANIFEST_FILE not in manifest["files"]
    write_manifest(staging, manifest, key)
    return manifest
