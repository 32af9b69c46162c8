"""The held-out split: sessions grouped at random (stratified on the label), or by time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from training.schema import LABEL, TIMESTAMP, DataError

SPLIT_SEED = 42
TEST_FOLDS = 5  # one fold of five = 20% held out
SESSION_SPLIT = "session"
TIME_SPLIT = "time"
SPLITS = (SESSION_SPLIT, TIME_SPLIT)


@dataclass(frozen=True)
class Split:
    """Row positions of the training and held-out parts, and how they were chosen."""

    train: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    description: str


def require_splittable(frame: pd.DataFrame) -> None:
    """Raises DataError unless every fold can get both classes (clicks and non-clicks)."""
    counts = frame[LABEL].value_counts()
    units = frame["session_id"].nunique()
    if len(counts) < 2 or counts.min() < TEST_FOLDS or units < TEST_FOLDS:
        raise DataError(
            f"cannot hold out 1/{TEST_FOLDS} of the data: {LABEL} counts "
            f"{counts.to_dict()} over {units} sessions; need both values at least "
            f"{TEST_FOLDS} times and at least {TEST_FOLDS} sessions"
        )


def split_rows(frame: pd.DataFrame, how: str = SESSION_SPLIT) -> Split:
    """80/20 split keeping each session on one side.

    "session": sessions assigned to folds at random, stratified on the label (the first fold
    is held out). "time": the sessions that started last (by their first timestamp) are held
    out, as a model trained on the past and judged on the future would be.
    """
    require_splittable(frame)
    labels = frame[LABEL].to_numpy()
    positions = np.arange(len(frame), dtype=np.int64)
    sessions = frame["session_id"].astype(str).to_numpy()
    if how == TIME_SPLIT:
        return _time_split(frame, sessions, positions)
    if how != SESSION_SPLIT:
        raise ValueError(f"unknown split {how!r}; expected one of {list(SPLITS)}")
    folds = StratifiedGroupKFold(TEST_FOLDS, shuffle=True, random_state=SPLIT_SEED)
    train, test = next(folds.split(positions, labels, groups=sessions))
    description = (
        f"StratifiedGroupKFold({TEST_FOLDS}, shuffle=True, random_state={SPLIT_SEED}) "
        "grouped by session_id, stratified on the label; first fold held out"
    )
    return Split(np.sort(train).astype(np.int64), np.sort(test).astype(np.int64), description)


def _time_split(
    frame: pd.DataFrame, sessions: npt.NDArray[np.str_], positions: npt.NDArray[np.int64]
) -> Split:
    if TIMESTAMP not in frame.columns or frame[TIMESTAMP].isna().all():
        raise DataError(f"--split time needs the {TIMESTAMP} column; this data has none")
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True, errors="coerce")
    started = stamps.groupby(sessions).min().sort_values(kind="stable")
    n_test = max(1, round(len(started) / TEST_FOLDS))
    held_out = started.index[len(started) - n_test :]
    test = np.isin(sessions, held_out)
    cutoff = started.iloc[len(started) - n_test]
    if frame.loc[test, LABEL].nunique() < 2 or frame.loc[~test, LABEL].nunique() < 2:
        raise DataError("the time split leaves one side with a single label value")
    description = (
        f"by time: the {n_test} sessions (1/{TEST_FOLDS}) that started last, from "
        f"{cutoff:%Y-%m-%dT%H:%M:%SZ}, held out; sessions never straddle the split"
    )
    return Split(positions[~test], positions[test], description)
