"""`python -m training learn`: the impression log's shown slots and clicks -> a new bundle."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from reco import (
    AFFINITY_CSV_FILE,
    AFFINITY_FILES,
    CATALOG_FILE,
    FORMAT_VERSION,
    MODEL_FILE,
    TRAIN_SAMPLE_FILE,
    SigningKey,
    hash_files,
    probe_to_manifest,
    read_manifest,
    write_manifest,
)
from training.features import mask_context
from training.logs import Slots, attribute, read_events, read_responses
from training.model import NUM_TREES, PARAMS, predict, split_thresholds, train_booster
from training.schema import DataError

log = logging.getLogger(__name__)

REPORT_FILE = "learned.json"
PROBE_ROWS = 200
PROBE_SEED = 42
MIN_ROWS = 200


@dataclass(frozen=True)
class LearnSettings:
    """What `learn` reads and writes."""

    logs: Path
    base: Path  # the bundle whose features the log holds: its catalog and encodings are reused
    out: Path
    window_seconds: float
    context_free: bool = False
    threads: int = 2


def describe(slots: Slots) -> dict[str, Any]:
    """What the rows are: counts, sessions, time range, click rate, attributed purchases."""
    frame = slots.frame
    times = frame["time_ms"].to_numpy(np.int64)

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")

    return {
        "rows": len(frame),
        "responses": int(frame["response"].nunique()),
        "sessions": int(frame["session_id"].nunique()),
        "time_range": [iso(int(times.min())), iso(int(times.max()))] if len(times) else [],
        "clicks": int(slots.clicked.sum()),
        "click_rate": float(slots.clicked.mean()) if len(frame) else float("nan"),
        "attributed_purchases": int(slots.purchased.sum()),
        "variants": {str(k): int(v) for k, v in frame["variant"].value_counts().items()},
        "models": sorted(str(v) for v in frame["model_version"].unique()),
    }


def training_rows(settings: LearnSettings) -> tuple[Slots, npt.NDArray[np.float32]]:
    """The shown slots with their exact logged rows (cold starts have none and are left out)."""
    slots = attribute(read_responses(settings.logs), read_events(settings.logs),
                      settings.window_seconds)  # fmt: skip
    usable = ~slots.frame["cold_start"].to_numpy(bool)
    usable &= ~np.isnan(slots.features).all(axis=1) if slots.features.shape[1] else False
    kept = slots.where(usable)
    return kept, kept.features


def learn(settings: LearnSettings, key: SigningKey | None = None) -> dict[str, Any]:
    """Trains on the log and writes an immutable bundle at settings.out; returns its report."""
    if settings.out.exists():
        raise FileExistsError(f"{settings.out} already exists; bundles are immutable")
    base = read_manifest(settings.base)
    names = tuple(base["feature_names"])
    slots, X = training_rows(settings)
    if X.shape[1] != len(names):
        raise DataError(
            f"the log's rows have {X.shape[1]} features, the base bundle {len(names)}: "
            "learn with the bundle that served them"
        )
    if len(X) < MIN_ROWS or slots.clicked.sum() == 0 or slots.clicked.all():
        raise DataError(
            f"the log has {len(X)} usable rows and {int(slots.clicked.sum())} clicks: at least "
            f"{MIN_ROWS} rows with both clicks and non-clicks are needed"
        )
    if settings.context_free:
        X = mask_context(X, names)
    report = describe(slots) | {
        "context_free": settings.context_free,
        "base_bundle": str(base["version"]),
        "attribution_window_seconds": settings.window_seconds,
    }
    log.info("learning from %s", json.dumps(report))
    booster = train_booster(X, slots.clicked.astype(np.int64), names, settings.threads)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=settings.out.parent, prefix=f".{settings.out.name}-"))
    staging.chmod(0o755)
    try:
        _write_bundle(staging, settings, base, booster, X, report, key)
        staging.rename(settings.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _write_bundle(staging: Path, settings: LearnSettings, base: dict[str, Any],
                  booster: lgb.Booster, X: npt.NDArray[np.float32], report: dict[str, Any],
                  key: SigningKey | None) -> None:  # fmt: skip
    booster.save_model(str(staging / MODEL_FILE))
    # The base bundle's catalog and affinity, whichever affinity format it holds.
    tables = [name for name in (CATALOG_FILE, *AFFINITY_FILES, AFFINITY_CSV_FILE)
              if (settings.base / name).exists()]  # fmt: skip
    for name in tables:
        shutil.copyfile(settings.base / name, staging / name)
    rng = np.random.default_rng(PROBE_SEED)
    sample = X[np.sort(rng.choice(len(X), min(20_000, len(X)), replace=False))]
    np.save(staging / TRAIN_SAMPLE_FILE, np.ascontiguousarray(sample, np.float32))
    (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    probe = _probe_rows(booster, X, rng)
    files = [MODEL_FILE, *tables, TRAIN_SAMPLE_FILE, REPORT_FILE]
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": settings.out.name,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feature_set": base["feature_set"],
        "feature_names": list(base["feature_names"]),
        "encodings": base["encodings"],
        "default_threshold": base["default_threshold"],
        "parity_probe": probe_to_manifest(probe, predict(booster, probe)),
        "training": {
            "learned_from_log": str(settings.logs),
            "params": {**PARAMS, "num_boost_round": NUM_TREES, "num_threads": settings.threads},
            "lightgbm_version": lgb.__version__,
            **report,
        },
        "calibration": None,
        "metrics": {"baseline_ctr": report["click_rate"]},
        "files": hash_files(staging, files),
    }
    write_manifest(staging, manifest, key)


def _probe_rows(booster: lgb.Booster, X: npt.NDArray[np.float32],
                rng: np.random.Generator) -> npt.NDArray[np.float32]:  # fmt: skip
    """Logged rows, the same with NaN injected, an all-NaN row and rows on split thresholds."""
    picked = X[rng.choice(len(X), min(PROBE_ROWS, len(X)), replace=False)]
    with_nan = picked[: PROBE_ROWS // 4].copy()
    for row in with_nan:
        row[rng.choice(X.shape[1], size=3, replace=False)] = np.nan
    on_split: list[npt.NDArray[np.float32]] = []
    for feature, threshold in split_thresholds(booster)[:100]:
        row = picked[len(on_split) % len(picked)].copy()
        row[feature] = np.float32(threshold)
        on_split.append(row)
    blocks = [picked, with_nan, np.full((1, X.shape[1]), np.nan, np.float32)]
    if on_split:
        blocks.append(np.stack(on_split))
    return np.concatenate(blocks).astype(np.float32)
