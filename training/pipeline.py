"""`python -m training train`: check, split, fit, evaluate and write an immutable model bundle."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import (
    CANDIDATE_SETS,
    CATALOG_FILE,
    FEATURE_SETS,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    TRAIN_SAMPLE_FILE,
    Encodings,
    SigningKey,
    Vocabulary,
    hash_files,
    probe_to_manifest,
    sha256_file,
    write_manifest,
)
from training.affinity import affinity_table
from training.catalog import catalog_from_frame, catalog_to_frame, tables_from_frame
from training.dataset import DataSet, load_dataset
from training.evaluation import MODEL, Evaluation, Fitted, evaluate
from training.features import features_from_frame, mask_context
from training.metrics import NOT_APPLICABLE, business_projection
from training.model import PARAMS, model_params, predict, train_booster
from training.probe import build_probe
from training.reliability import (
    SIGNIFICANCE,
    Platt,
    ece,
    ece_noise_floor,
    reliability_bins,
)
from training.report import render_report, write_plots
from training.schema import CANDIDATE_SET, LABEL, DataError
from training.settings import (
    DEFAULT_AFFINITY_TOP_K,
    DEFAULT_IMPRESSIONS_FEATURE_SET,
    TrainSettings,
)
from training.split import SESSION_SPLIT, SPLIT_SEED, split_rows
from training.story import CAMPING_STORY, rank_catalog
from training.truth import Truth

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
    if feature_set in CANDIDATE_SETS:
        categories = pd.concat([categories, train["rec_category"].dropna().astype(str)])
    return Encodings(
        category=Vocabulary.fit(categories.to_numpy()),
        device_type=Vocabulary.fit(train["device_type"].dropna().astype(str).to_numpy()),
        traffic_source=Vocabulary.fit(train["traffic_source"].dropna().astype(str).to_numpy()),
    )


def feature_set_of(data: DataSet, asked: str | None) -> str:
    """The feature set to train: the one asked for, if the data can train it; by default the
    sequence set for impressions and the session set for notebook rows."""
    if asked is None:
        if data.feature_set == CANDIDATE_SET:
            return DEFAULT_IMPRESSIONS_FEATURE_SET
        return data.feature_set
    if asked in CANDIDATE_SETS and data.feature_set != CANDIDATE_SET:
        raise DataError(
            f"the {asked} feature set needs impressions (rec_ columns); this data has the "
            "notebook schema"
        )
    return asked


def fit(
    data: DataSet,
    train: pd.DataFrame,
    test: pd.DataFrame,
    feature_set: str,
    threads: int,
    context_free: bool = False,
    affinity_top_k: int = DEFAULT_AFFINITY_TOP_K,
) -> Fitted:
    """Encodings, affinity and the model, all from the training split (context_free: the
    model learns from the candidate's own features only, see mask_context)."""
    encodings = fit_encodings(train, feature_set)
    catalog = tables = affinity = None
    if feature_set in CANDIDATE_SETS:
        assert data.catalog is not None  # load_dataset always supplies one for impressions
        catalog = catalog_from_frame(data.catalog)
        affinity = affinity_table(train)
        tables = tables_from_frame(catalog, affinity, affinity_top_k)
    X_train = features_from_frame(train, encodings, catalog, tables, feature_set)
    X_test = features_from_frame(test, encodings, catalog, tables, feature_set)
    names = FEATURE_SETS[feature_set]
    if context_free:
        X_train = mask_context(X_train, names)
    booster = train_booster(X_train, train[LABEL].to_numpy(), names, threads)
    return Fitted(booster, feature_set, encodings, catalog, tables, affinity, X_train, X_test)


def calibrate(
    train: pd.DataFrame, test: pd.DataFrame, fitted: Fitted, settings: TrainSettings
) -> tuple[Fitted, dict[str, Any]]:
    """Decides on a Platt step and reports calibration before and after (held-out rows).

    The step is fitted on a validation fifth of the training sessions, scored by a model
    trained on the other four fifths, never on the held-out rows. "auto" applies it when it
    fits the validation rows significantly better than no step (likelihood-ratio test at
    SIGNIFICANCE); it is then folded into the trees, so model.txt, model.so and model.onnx all
    serve the calibrated probability.
    """
    y_test = test[LABEL].to_numpy()
    raw_test = np.asarray(fitted.booster.predict(fitted.X_test, raw_score=True), np.float64)
    before = predict(fitted.booster, fitted.X_test)
    floor_median, floor_high = ece_noise_floor(before)
    report: dict[str, Any] = {
        "bins": 10,
        "ece": ece(y_test, before),
        "ece_noise_floor": {"median": floor_median, "p95": floor_high},
        "reliability": reliability_bins(y_test, before),
        "at_threshold": _threshold_gap(y_test, before, settings.threshold),
    }
    if settings.calibration == "none":
        report.update(applied=False, reason="--calibration none")
        return fitted, report
    split = split_rows(train, SESSION_SPLIT)
    y = train[LABEL].to_numpy()
    names = FEATURE_SETS[fitted.feature_set]
    part = train_booster(fitted.X_train[split.train], y[split.train], names, settings.num_threads)
    raw_val = np.asarray(part.predict(fitted.X_train[split.test], raw_score=True), np.float64)
    y_val = y[split.test]
    platt = Platt.fit(raw_val, y_val)
    val_before = 1.0 / (1.0 + np.exp(-raw_val))
    val_ece = ece(y_val, val_before)
    val_floor = ece_noise_floor(val_before)[1]
    p_value = platt.p_value(raw_val, y_val)
    material = p_value < SIGNIFICANCE
    after = platt.apply(raw_test)
    report["platt"] = {
        **platt.to_manifest(),
        "fitted_on": f"{len(y_val)} validation rows (1/5 of the training sessions)",
        "validation": {
            "ece": val_ece,
            "ece_noise_floor_p95": val_floor,
            "ece_after": ece(y_val, platt.apply(raw_val)),
            "p_value": p_value,
        },
        "held_out_ece_after": ece(y_test, after),
        "held_out_reliability_after": reliability_bins(y_test, after),
        "at_threshold_after": _threshold_gap(y_test, after, settings.threshold),
    }
    apply = settings.calibration == "platt" or (settings.calibration == "auto" and material)
    report["applied"] = bool(apply)
    report["reason"] = (
        "--calibration platt"
        if settings.calibration == "platt"
        else (
            f"on the validation rows ECE {val_ece:.4f} (a calibrated model's noise floor, "
            f"p95: {val_floor:.4f}); Platt's fit over none: likelihood-ratio p = "
            f"{p_value:.3f} ({'<' if material else '>='} {SIGNIFICANCE}): "
            + ("material, applied" if material else "not significant, not applied")
        )
    )
    if not apply:
        return fitted, report
    return replace(fitted, booster=platt.fold_into(fitted.booster)), report


def _threshold_gap(
    y: npt.NDArray[Any], scores: npt.NDArray[np.float64], threshold: float
) -> dict[str, Any]:
    """Rows at or above the serving threshold: how many, mean predicted, observed CTR."""
    shown = scores >= threshold
    n = int(shown.sum())
    return {
        "threshold": threshold,
        "rows": n,
        "predicted": float(scores[shown].mean()) if n else None,
        "observed": float(y[shown].mean()) if n else None,
    }


def live_session_example(fitted: Fitted) -> dict[str, Any] | str:
    """The camping story scored over the catalog, when the catalog has its products."""
    if fitted.catalog is None or fitted.tables is None:
        return f"{NOT_APPLICABLE}: no catalog"
    story = CAMPING_STORY
    try:
        ranked = rank_catalog(
            fitted.booster,
            fitted.encodings,
            fitted.catalog,
            fitted.tables,
            story,
            fitted.feature_set,
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


def importance_table(booster: lgb.Booster) -> list[dict[str, Any]]:
    """Per feature: total gain, its share of all gain, and how many splits use it; by gain."""
    gains = booster.feature_importance(importance_type="gain")
    splits = booster.feature_importance(importance_type="split")
    total = float(gains.sum()) or 1.0
    rows = [
        {"feature": n, "gain": float(g), "gain_share": float(g) / total, "splits": int(k)}
        for n, g, k in zip(booster.feature_name(), gains, splits, strict=True)
    ]
    return sorted(rows, key=lambda r: (-r["gain"], r["feature"]))


def _ceiling_headline(metrics: dict[str, Any]) -> dict[str, Any] | str:
    """The manifest's short form of how close the model comes to the simulator's ceiling."""
    ceiling = metrics["ceiling"]
    if not ceiling.get("available"):
        return str(ceiling.get("reason"))
    out: dict[str, Any] = {"auc_fraction": ceiling["model_auc_fraction"]["value"]}
    catalog = metrics.get("catalog")
    if isinstance(catalog, dict) and "share_at_10" in catalog["rankers"].get(MODEL, {}):
        out["catalog_share_at_10"] = catalog["rankers"][MODEL]["share_at_10"]["value"]
    return out


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


@dataclass(frozen=True)
class Parts:
    """The split data the evaluation sees, and the real sizes behind it. Single-machine
    training holds every row here; distributed training (training/distributed.py) holds the
    held-out rows and a sample of the training rows, and counts the rest where it lies."""

    train: pd.DataFrame  # all training rows, or a sample of them (the baselines fit on it)
    test: pd.DataFrame
    split_description: str
    clean_rows: int
    train_rows: int
    train_sessions: int
    distributed: dict[str, Any] | None = None  # the cluster it trained on (the manifest says)


def train(settings: TrainSettings, key: SigningKey | None = None) -> dict[str, Any]:
    """Runs the whole training and writes the bundle at settings.out, its manifest signed with
    `key` when one is given; returns the manifest."""
    check_new_bundle(settings.out)
    started = time.perf_counter()
    data = load_dataset(settings.data, settings.max_bad_fraction)
    log.info("data quality:\n%s", data.quality.to_text())
    feature_set = feature_set_of(data, settings.feature_set)
    split = split_rows(data.frame, settings.split)
    train_part = data.frame.iloc[split.train].reset_index(drop=True)
    test_part = data.frame.iloc[split.test].reset_index(drop=True)
    if settings.context_free and feature_set not in CANDIDATE_SETS:
        raise DataError("--context-free needs the candidate feature set (impressions)")
    fitted = fit(data, train_part, test_part, feature_set, settings.num_threads,
                 settings.context_free, settings.affinity_top_k)  # fmt: skip
    fitted, calibration = calibrate(train_part, test_part, fitted, settings)
    parts = Parts(train_part, test_part, split.description, len(data.frame), len(train_part),
                  int(train_part["session_id"].nunique()))  # fmt: skip
    return finish(settings, key, data, parts, fitted, calibration, started)


def check_new_bundle(out: Path) -> None:
    """Bundles are immutable: refuses an --out that exists."""
    if out.exists():
        raise BundleExistsError(f"{out} already exists; bundles are immutable, choose a new --out")


def finish(
    settings: TrainSettings,
    key: SigningKey | None,
    data: DataSet,
    parts: Parts,
    fitted: Fitted,
    calibration: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Evaluates a fitted model on the held-out rows and writes the bundle; returns the
    manifest."""
    out = settings.out
    train_part, test_part = parts.train, parts.test
    trained_at = time.perf_counter()
    truth = Truth.of(test_part, data.catalog, data.generation)
    evaluation = evaluate(
        train_part,
        test_part,
        fitted,
        data.catalog,
        truth,
        settings.threshold,
        settings.num_threads,
    )
    metrics = evaluation.metrics
    generated = data.generation is not None and not isinstance(truth, str)
    metrics.update(
        feature_set=fitted.feature_set,
        rows={
            "input": data.quality.input_rows,
            "clean": parts.clean_rows,
            "train": parts.train_rows,
            "test": len(test_part),
            "train_sessions": parts.train_sessions,
            "test_sessions": int(test_part["session_id"].nunique()),
        },
        data=_data_description(data, truth),
        split=parts.split_description,
        data_quality=data.quality.to_dict(),
        calibration=calibration,
        importance=importance_table(fitted.booster),
        live_session_example=live_session_example(fitted),
    )
    if generated and not settings.business_projection:
        metrics["business_projection"] = (
            "omitted: the data are generated (pass --business-projection to show the "
            "illustration anyway)"
        )
    else:
        metrics["business_projection"] = business_projection(
            metrics["baseline_ctr"], metrics["ctr_at_threshold"], settings.business
        )
    for warning in metrics["warnings"]:
        log.warning("%s", warning)
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
            parts,
            fitted,
            evaluation,
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


def data_digest(path: Path) -> str:
    """sha256 of the data file, or of a directory of partitions (the digest of their names and
    digests, in name order)."""
    if path.is_file():
        return sha256_file(path)
    listing = "".join(
        f"{part.relative_to(path)}\0{sha256_file(part)}\n"
        for part in sorted(p for p in path.rglob("*") if p.is_file())
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def _data_description(data: DataSet, truth: Truth | str) -> dict[str, Any]:
    """Whether the data are generated, by what, and whether the simulator's truth is usable."""
    generation = data.generation or {}
    return {
        "path": str(data.csv_path),
        "generated": data.generation is not None,
        "seed": generation.get("seed"),
        "simulator_version": generation.get("simulator", {}).get("version"),
        "truth": "available" if isinstance(truth, Truth) else truth,
    }


def _write_bundle(
    staging: Path,
    version: str,
    data: DataSet,
    parts: Parts,
    fitted: Fitted,
    evaluation: Evaluation,
    settings: TrainSettings,
    key: SigningKey | None,
) -> dict[str, Any]:
    """Writes every bundle file into `staging`, the manifest (and its signature) last; returns
    the manifest."""
    fitted.booster.save_model(str(staging / MODEL_FILE))
    files = [MODEL_FILE]
    if fitted.catalog is not None and fitted.affinity is not None:
        catalog_to_frame(fitted.catalog).to_csv(
            staging / CATALOG_FILE, index=False, lineterminator="\n"
        )
        assert fitted.tables is not None
        files += [CATALOG_FILE, *fitted.tables.affinity.save(staging)]
    rng = np.random.default_rng(SAMPLE_SEED)
    n_sample = min(TRAIN_SAMPLE_ROWS, len(fitted.X_train))
    sample = fitted.X_train[np.sort(rng.choice(len(fitted.X_train), n_sample, replace=False))]
    np.save(staging / TRAIN_SAMPLE_FILE, np.ascontiguousarray(sample, dtype=np.float32))
    files.append(TRAIN_SAMPLE_FILE)

    metrics = evaluation.metrics
    files += write_plots(staging, evaluation, metrics["importance"], metrics["calibration"])
    _predictions(parts.test, evaluation.scores[MODEL], settings.threshold).to_csv(
        staging / PREDICTIONS_FILE, index=False, lineterminator="\n"
    )
    files.append(PREDICTIONS_FILE)
    metrics = _jsonable(metrics)
    (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    files.append(METRICS_FILE)

    params, trees = model_params(FEATURE_SETS[fitted.feature_set])
    training_info = {
        "data_path": str(data.csv_path),
        "data_sha256": data_digest(data.csv_path),
        "catalog_source": data.catalog_source,
        "rows": metrics["rows"],
        "split": parts.split_description,
        "seed": {"split": SPLIT_SEED, "model": PARAMS["seed"], "train_sample": SAMPLE_SEED},
        "params": {**params, "num_boost_round": trees, "num_threads": settings.num_threads},
        "lightgbm_version": lgb.__version__,
        "data_quality": metrics["data_quality"],
    }
    if parts.distributed is not None:
        training_info["distributed"] = parts.distributed
    info = {"version": version, "data": str(data.csv_path), "split": parts.split_description}
    (staging / REPORT_FILE).write_text(render_report(metrics, info))
    files.append(REPORT_FILE)

    probe = build_probe(
        fitted.booster,
        parts.test,
        fitted.X_test,
        fitted.feature_set,
        fitted.encodings,
        fitted.catalog,
        fitted.tables,
    )
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feature_set": fitted.feature_set,
        "feature_names": list(FEATURE_SETS[fitted.feature_set]),
        "encodings": fitted.encodings.to_manifest(),
        "default_threshold": settings.threshold,
        "parity_probe": {
            **probe_to_manifest(probe.rows, probe.probabilities),
            "composition": probe.composition(),
            "kinds": probe.kinds,
        },
        "training": training_info,
        "calibration": (
            {key: metrics["calibration"]["platt"][key] for key in ("method", "a", "b", "fitted_on")}
            if metrics["calibration"]["applied"]
            else None
        ),
        "metrics": {
            key: metrics[key]
            for key in ("auc", "accuracy", "baseline_ctr", "ctr_at_threshold", "lift_at_threshold")
        }
        | {"ceiling": _ceiling_headline(metrics)},
        "files": hash_files(staging, files),
    }
    assert MANIFEST_FILE not in manifest["files"]
    write_manifest(staging, manifest, key)
    return manifest
