"""The parity probe: feature rows every serving backend must score exactly like LightGBM."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import FEATURE_SETS, N_PREVIOUS, Catalog, Encodings, ProductTables
from training.features import features_from_frame
from training.model import predict, split_thresholds

PROBE_SEED = 42
HELD_OUT_ROWS = 150
NAN_ROWS = 60
UNKNOWN_ROWS = 20
THRESHOLD_ROWS = 80
NEIGHBOUR_ROWS = 40  # rows one float32 step either side of a threshold

UNSEEN_CATEGORY = "Unseen Category"
UNSEEN_DEVICE = "Smart TV"
UNSEEN_TRAFFIC = "Carrier Pigeon"
UNKNOWN_PRODUCT = "PROD_UNKNOWN"


@dataclass(frozen=True)
class Probe:
    """Probe rows (float32, NaN = missing), LightGBM's float64 probabilities, and row kinds."""

    rows: npt.NDArray[np.float32]
    probabilities: npt.NDArray[np.float64]
    kinds: list[str]

    def composition(self) -> dict[str, int]:
        """How many rows of each kind."""
        return {kind: self.kinds.count(kind) for kind in dict.fromkeys(self.kinds)}


def _unseen_context(frame: pd.DataFrame, feature_set: str) -> pd.DataFrame:
    """Rows whose categorical values were never seen in training (encode to UNKNOWN_CODE)."""
    changed = frame.assign(
        current_category=UNSEEN_CATEGORY, device_type=UNSEEN_DEVICE, traffic_source=UNSEEN_TRAFFIC
    )
    if feature_set == "candidate":
        changed = changed.assign(rec_category=UNSEEN_CATEGORY)
    return changed


def _unknown_products(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose current, previous and candidate products are not in the catalog."""
    ids = [f"{UNKNOWN_PRODUCT}_{i}" for i in range(len(frame))]
    previous = {
        f"prev_product_{k}": [f"{p}_prev{k}" for p in ids] for k in range(1, N_PREVIOUS + 1)
    }
    return frame.assign(current_product_id=ids, rec_product_id=ids, **previous)


def build_probe(
    booster: lgb.Booster,
    held_out: pd.DataFrame,
    held_out_features: npt.NDArray[np.float32],
    feature_set: str,
    encodings: Encodings,
    catalog: Catalog | None,
    tables: ProductTables | None,
) -> Probe:
    """Held-out rows, plus rows with NaN injected, unseen categories, unknown products and
    values exactly on (and one float32 step around) the trained model's split thresholds."""
    rng = np.random.default_rng(PROBE_SEED)
    n_features = len(FEATURE_SETS[feature_set])
    blocks: list[npt.NDArray[np.float32]] = []
    kinds: list[str] = []

    def add(rows: npt.NDArray[np.float32], kind: str) -> None:
        blocks.append(np.asarray(rows, dtype=np.float32).reshape(-1, n_features))
        kinds.extend([kind] * len(blocks[-1]))

    def pick(n: int) -> npt.NDArray[np.int64]:
        return rng.choice(len(held_out), size=min(n, len(held_out)), replace=False)

    add(held_out_features[pick(HELD_OUT_ROWS)], "held_out")

    with_nan = held_out_features[pick(NAN_ROWS)].copy()
    for row in with_nan:
        row[rng.choice(n_features, size=rng.integers(1, 4), replace=False)] = np.nan
    add(with_nan, "nan_injected")
    add(np.full(n_features, np.nan, dtype=np.float32), "all_nan")

    context = held_out.iloc[pick(UNKNOWN_ROWS)]
    add(
        features_from_frame(
            _unseen_context(context, feature_set), encodings, catalog, tables, feature_set
        ),
        "unseen_category",
    )
    if feature_set == "candidate":
        add(
            features_from_frame(
                _unknown_products(context), encodings, catalog, tables, feature_set
            ),
            "unknown_product",
        )

    thresholds = sorted(set(split_thresholds(booster)))
    if thresholds:
        chosen = rng.choice(
            len(thresholds), size=min(THRESHOLD_ROWS, len(thresholds)), replace=False
        )
        on_split = held_out_features[rng.choice(len(held_out), size=len(chosen))].copy()
        for row, index in zip(on_split, chosen, strict=True):
            feature, threshold = thresholds[index]
            row[feature] = np.float32(threshold)
        add(on_split, "on_threshold")
        half = min(NEIGHBOUR_ROWS // 2, len(chosen))
        around = np.concatenate([on_split[:half], on_split[:half]])
        for i, row in enumerate(around):
            feature = thresholds[chosen[i % half]][0]
            row[feature] = np.nextafter(row[feature], np.float32(np.inf if i >= half else -np.inf))
        add(around, "next_to_threshold")

    rows = np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32)
    return Probe(rows, predict(booster, rows), kinds)
