"""The held-out split: grouped by session for impressions, plain stratified for notebook rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from training.schema import CANDIDATE_SET, LABEL, DataError

SPLIT_SEED = 42
TEST_FOLDS = 5  # one fold of five = 20% held out


@dataclass(frozen=True)
class Split:
    """Row positions of the training and held-out parts, and how they were chosen."""

    train: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    description: str


def require_splittable(frame: pd.DataFrame, feature_set: str) -> None:
    """Raises DataError unless every fold can get both classes (clicks and non-clicks)."""
    counts = frame[LABEL].value_counts()
    units = frame["session_id"].nunique() if feature_set == CANDIDATE_SET else len(frame)
    if len(counts) < 2 or counts.min() < TEST_FOLDS or units < TEST_FOLDS:
        raise DataError(
            f"cannot hold out 1/{TEST_FOLDS} of the data: {LABEL} counts "
            f"{counts.to_dict()} over {units} sessions; need both values at least "
            f"{TEST_FOLDS} times and at least {TEST_FOLDS} sessions"
        )


def split_rows(frame: pd.DataFrame, feature_set: str) -> Split:
    """80/20 split, stratified on the label; impressions keep each session on one side."""
    require_splittable(frame, feature_set)
    labels = frame[LABEL].to_numpy()
    positions = np.arange(len(frame), dtype=np.int64)
    if feature_set == CANDIDATE_SET:
        folds = StratifiedGroupKFold(TEST_FOLDS, shuffle=True, random_state=SPLIT_SEED)
        train, test = next(folds.split(positions, labels, groups=frame["session_id"].to_numpy()))
        description = (
            f"StratifiedGroupKFold({TEST_FOLDS}, shuffle=True, random_state={SPLIT_SEED}) "
            "grouped by session_id, stratified on the label; first fold held out"
        )
    else:
        train, test = train_test_split(
            positions, test_size=1 / TEST_FOLDS, stratify=labels, random_state=SPLIT_SEED
        )
        description = f"train_test_split(test_size=0.2, stratify=label, random_state={SPLIT_SEED})"
    return Split(np.sort(train).astype(np.int64), np.sort(test).astype(np.int64), description)
