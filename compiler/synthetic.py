"""Synthetic bundles: a LightGBM model trained on random data, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from compiler.build import TRAIN_SAMPLE_FILE
from reco import (
    FEATURE_NAMES,
    FORMAT_VERSION,
    MODEL_FILE,
    UNKNOWN_CODE,
    hash_files,
    probe_to_manifest,
    write_manifest,
)


@dataclass(frozen=True)
class SyntheticSpec:
    """The shape of a synthetic model. Column kinds cycle: continuous, small integer code, 0/1
    flag; categorical columns hold codes 0..n_categories-1 and are given to LightGBM as such."""

    feature_names: Sequence[str] = FEATURE_NAMES
    n_rows: int = 4000
    n_trees: int = 100
    max_depth: int = 4
    num_leaves: int = 16
    categorical: Sequence[int] = ()
    n_categories: int = 12
    constant: Sequence[int] = ()
    nan_fraction: float = 0.05
    probe_rows: int = 300
    sample_rows: int = 4000
    seed: int = 0
    extra_params: dict[str, Any] = field(default_factory=dict)


def synthetic_rows(
    spec: SyntheticSpec, n_rows: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Random feature rows in the spec's column kinds, with NaN sprinkled in."""
    n_features = len(spec.feature_names)
    X = np.empty((n_rows, n_features), dtype=np.float32)
    for j in range(n_features):
        kind = j % 3
        if j in spec.categorical:
            X[:, j] = rng.integers(0, spec.n_categories, n_rows)
        elif kind == 0:
            X[:, j] = rng.lognormal(0.0, 1.0, n_rows) * (1 + j)
        elif kind == 1:
            X[:, j] = rng.integers(-1, 8, n_rows)  # -1: the reserved unknown code
        else:
            X[:, j] = rng.integers(0, 2, n_rows)
    for j in spec.constant:
        X[:, j] = 1.0
    missing = rng.random(X.shape) < spec.nan_fraction
    missing[:, list(spec.constant)] = False
    X[missing] = np.nan
    return X


def _labels(
    X: npt.NDArray[np.float32], spec: SyntheticSpec, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    filled = np.nan_to_num(X, nan=0.0)
    scaled = (filled - filled.mean(axis=0)) / (filled.std(axis=0) + 1e-9)
    weights = rng.normal(0.0, 1.0, X.shape[1])
    logit = scaled @ weights / np.sqrt(X.shape[1]) + 0.8 * scaled[:, 0] * scaled[:, 1]
    for j in spec.categorical:
        favoured = rng.choice(spec.n_categories, size=max(1, spec.n_categories // 3), replace=False)
        logit += 1.5 * np.isin(X[:, j], favoured)
    logit += rng.normal(0.0, 0.7, len(X))
    return (logit > np.median(logit)).astype(np.int64)


def write_synthetic_bundle(out_dir: Path, spec: SyntheticSpec) -> lgb.Booster:
    """Trains a binary LightGBM model on random rows and writes a bundle training-style:
    model.txt, train_sample.npy and a manifest with the parity probe. Returns the booster."""
    rng = np.random.default_rng(spec.seed)
    X = synthetic_rows(spec, spec.n_rows, rng)
    y = _labels(X, spec, rng)
    params = {
        "objective": "binary",
        "max_depth": spec.max_depth,
        "num_leaves": spec.num_leaves,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "deterministic": True,
        "seed": spec.seed,
        "num_threads": 1,
        "verbose": -1,
        **spec.extra_params,
    }
    dataset = lgb.Dataset(
        X,
        y,
        feature_name=list(spec.feature_names),
        categorical_feature=list(spec.categorical) or "auto",
        free_raw_data=False,
    )
    booster = lgb.train(params, dataset, num_boost_round=spec.n_trees)
    out_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out_dir / MODEL_FILE))
    np.save(out_dir / TRAIN_SAMPLE_FILE, np.ascontiguousarray(X[: spec.sample_rows]))

    probe = synthetic_rows(spec, spec.probe_rows, rng)
    probe[::7, 0] = UNKNOWN_CODE
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": out_dir.name,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feature_set": "synthetic",
        "feature_names": list(spec.feature_names),
        "encodings": {},
        "default_threshold": 0.7,
        "parity_probe": probe_to_manifest(probe, booster.predict(probe)),
        "files": hash_files(out_dir, [MODEL_FILE, TRAIN_SAMPLE_FILE]),
        "training": {"synthetic": True, "seed": spec.seed, "trees": spec.n_trees},
    }
    write_manifest(out_dir, manifest)
    return booster
