"""Finding, reading and checking a training data set (a generated directory or a user CSV)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reco import CATALOG_COLUMNS, CATALOG_FILE
from training.catalog import catalog_from_frame
from training.generator import IMPRESSIONS_FILE, REPORT_FILE, SESSIONS_FILE
from training.quality import QualityReport, check_quality
from training.schema import CANDIDATE_SET, DataError
from training.settings import DEFAULT_MAX_BAD_FRACTION


@dataclass(frozen=True)
class DataSet:
    """A checked data set: clean rows, which feature set they train, and where they came from."""

    frame: pd.DataFrame
    feature_set: str
    csv_path: Path
    catalog: pd.DataFrame | None  # CATALOG_COLUMNS; None for the notebook schema
    catalog_source: str  # a path, "derived from the impressions", or "none"
    quality: QualityReport
    generation: dict[str, Any] | None = None  # generation.json beside the CSV, if any


def resolve_csv(path: Path) -> Path:
    """The data CSV: the file itself, or impressions.csv / sessions.csv in a directory."""
    if path.is_dir():
        for name in (IMPRESSIONS_FILE, SESSIONS_FILE):
            if (path / name).is_file():
                return path / name
        raise DataError(f"{path} holds neither {IMPRESSIONS_FILE} nor {SESSIONS_FILE}")
    if not path.is_file():
        raise DataError(f"no such data file or directory: {path}")
    return path


def read_text_csv(path: Path) -> pd.DataFrame:
    """Every column as text (blank = missing), so bad values are reported, not guessed at."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}") from exc


def catalog_from_impressions(frame: pd.DataFrame) -> pd.DataFrame:
    """A catalog (CATALOG_COLUMNS) for impressions that came without one.

    Each product seen as current or candidate gets its most frequent category, its median
    price, and popularity = how often it appears relative to the most frequent product.
    """
    seen = pd.concat(
        [
            frame[["current_product_id", "current_category", "current_price"]].set_axis(
                ["product_id", "category", "price"], axis=1
            ),
            frame[["rec_product_id", "rec_category", "rec_price"]].set_axis(
                ["product_id", "category", "price"], axis=1
            ),
        ],
        ignore_index=True,
    )
    grouped = seen.groupby("product_id", sort=True)
    counts = grouped.size()
    catalog = pd.DataFrame(
        {
            "product_id": counts.index.astype(str),
            "name": counts.index.astype(str),
            "category": grouped["category"].agg(lambda c: c.mode().iloc[0]).to_numpy(),
            "subcategory": grouped["category"].agg(lambda c: c.mode().iloc[0]).to_numpy(),
            "price": grouped["price"].median().to_numpy(np.float64),
            "popularity": np.round(counts.to_numpy() / counts.max(), 6),
            "in_stock": True,
        }
    )
    return catalog.loc[:, list(CATALOG_COLUMNS)]


def _load_catalog(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"product_id": str})
        catalog_from_frame(frame)  # validates columns and unique ids
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: {exc}") from exc
    return frame.loc[:, list(CATALOG_COLUMNS)]


def load_dataset(
    path: Path,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    now: pd.Timestamp | None = None,
) -> DataSet:
    """Reads and checks the data at `path`; raises DataError when it cannot be trained on."""
    csv_path = resolve_csv(path)
    clean, report = check_quality(read_text_csv(csv_path), max_bad_fraction, now)
    catalog: pd.DataFrame | None = None
    source = "none"
    if report.feature_set == CANDIDATE_SET:
        catalog_path = csv_path.parent / CATALOG_FILE
        if catalog_path.is_file():
            catalog, source = _load_catalog(catalog_path), str(catalog_path)
        else:
            catalog, source = catalog_from_impressions(clean), "derived from the impressions"
    return DataSet(
        clean, report.feature_set, csv_path, catalog, source, report, _generation(csv_path)
    )


def _generation(csv_path: Path) -> dict[str, Any] | None:
    """generation.json beside the data (what generated it), or None."""
    path = csv_path.parent / REPORT_FILE
    if not path.is_file():
        return None
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    return loaded
