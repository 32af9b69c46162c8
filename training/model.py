"""The LightGBM click model: fixed parameters, deterministic training, float64 predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from training.settings import DEFAULT_THREADS

MODEL_SEED = 42
NUM_TREES = 100

# The notebook's model (100 trees of depth 4), made reproducible: deterministic with fixed
# seeds and a fixed thread count, so the same data gives the same model.txt.
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "max_depth": 4,
    "num_leaves": 16,
    "min_data_in_leaf": 20,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "deterministic": True,
    "force_col_wise": True,
    "seed": MODEL_SEED,
    "bagging_seed": MODEL_SEED,
    "feature_fraction_seed": MODEL_SEED,
    "data_random_seed": MODEL_SEED,
    "verbosity": -1,
}


def train_booster(
    X: npt.NDArray[np.float32],
    y: npt.NDArray[np.integer[Any]],
    feature_names: Sequence[str],
    num_threads: int = DEFAULT_THREADS,
) -> lgb.Booster:
    """Trains the binary click model on a float32 feature matrix (NaN = missing)."""
    params = {**PARAMS, "num_threads": num_threads}
    data = lgb.Dataset(X, label=y, feature_name=list(feature_names), free_raw_data=True)
    return lgb.train(params, data, num_boost_round=NUM_TREES)


def predict(booster: lgb.Booster, X: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Click probabilities in float64, the reference every other backend must reproduce."""
    return np.asarray(booster.predict(X), dtype=np.float64)


def split_thresholds(booster: lgb.Booster) -> list[tuple[int, float]]:
    """Every (feature index, threshold) the trees split on with a numeric comparison."""
    found: list[tuple[int, float]] = []

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" not in node:
            return
        if node.get("decision_type") == "<=":
            found.append((int(node["split_feature"]), float(node["threshold"])))
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return found
