"""The LightGBM click model: fixed parameters, deterministic training, float64 predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from reco import FEATURE_SETS
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


# Directions the click probability may only move in as a feature grows, where shopping sense
# says so: more popular, more affine to what the session viewed, more of the session in the
# candidate's subcategory -> more clicks; already seen, or shown further down -> fewer. Each
# tree still splits freely on everything else. Ranking the whole catalog from slates that show
# few rare products is where this pays: unconstrained trees learn noisy bumps in popularity
# and affinity that the slates cannot correct.
MONOTONE: dict[str, int] = {
    "rec_popularity": 1,
    "same_category": 1,
    "affinity_current": 1,
    "affinity_previous": 1,
    "rec_in_previous": -1,
    "hist_subcategory_share": 1,
    "hist_category_share": 1,
    "hist_product_share": -1,
    "hist_affinity": 1,
    "hist_subcategory_affinity": 1,
    "same_subcategory": 1,
    "previous_same_subcategory": 1,
    "landing_same_subcategory": 1,
    "slot": -1,
}


def monotone_constraints(feature_names: Sequence[str]) -> list[int]:
    """LightGBM's monotone_constraints for these features (0 = unconstrained)."""
    return [MONOTONE.get(name, 0) for name in feature_names]


# The sequence set's parameters, tuned on generator seeds 11, 23, 31, 43 and 59 (never the
# default run's seed 7) with scripts/tune_model.py: a slower rate, four times the trees, one
# level shallower, and L2 on the leaves (docs/evaluation.md, "Tuning"). The other sets keep the
# notebook's 100 trees of depth 4 (the request kernel is measured on that shape).
TUNED: dict[tuple[str, ...], tuple[dict[str, Any], int]] = {
    FEATURE_SETS["sequence"]: (
        {"learning_rate": 0.03, "max_depth": 3, "num_leaves": 8, "lambda_l2": 10.0},
        400,
    ),
}


def model_params(feature_names: Sequence[str]) -> tuple[dict[str, Any], int]:
    """LightGBM's parameters (without num_threads) and number of trees for these features."""
    overrides, trees = TUNED.get(tuple(feature_names), ({}, NUM_TREES))
    params = {**PARAMS, **overrides, "monotone_constraints": monotone_constraints(feature_names)}
    return params, trees


def train_booster(
    X: npt.NDArray[np.float32],
    y: npt.NDArray[np.integer[Any]],
    feature_names: Sequence[str],
    num_threads: int = DEFAULT_THREADS,
) -> lgb.Booster:
    """Trains the binary click model on a float32 feature matrix (NaN = missing)."""
    params, trees = model_params(feature_names)
    data = lgb.Dataset(X, label=y, feature_name=list(feature_names), free_raw_data=True)
    return lgb.train({**params, "num_threads": num_threads}, data, num_boost_round=trees)


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
