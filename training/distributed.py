"""`python -m training train --dask SCHEDULER | --dask-workers N`: the same bundle, trained with
lightgbm.dask on a dask.distributed cluster from partitioned data.

The rows never gather on the driver: the workers read their partitions (CSV byte ranges or
Parquet files), check them, build the feature rows and train together (LightGBM's data-
parallel learner). The driver holds what is small: the (session, label) columns the split is
drawn from (the same split as single-machine training), the vocabularies and the affinity
table, the held-out rows it evaluates on, and a sample of the training rows for the
baselines and the bundle's training sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.distributed import Client, LocalCluster
from lightgbm.dask import DaskLGBMClassifier

from reco import (
    CATALOG_FILE,
    FEATURE_SETS,
    Catalog,
    Encodings,
    ProductTables,
    SigningKey,
    Vocabulary,
)
from training.affinity import affinity_from_baskets, session_baskets
from training.catalog import catalog_from_frame, tables_from_frame
from training.dataset import DataSet, _generation, _load_catalog, catalog_from_impressions
from training.evaluation import Fitted
from training.features import features_from_frame
from training.generator import IMPRESSIONS_FILE
from training.model import NUM_TREES, PARAMS, monotone_constraints
from training.pipeline import Parts, calibrate, check_new_bundle, finish
from training.quality import QualityReport, RuleResult, check_quality
from training.schema import CANDIDATE_SET, LABEL, DataError
from training.settings import TrainSettings
from training.split import SESSION_SPLIT, split_rows

log = logging.getLogger(__name__)

# Training rows the driver keeps for the baselines and the bundle's train_sample.npy.
DRIVER_SAMPLE_ROWS = 200_000
SAMPLE_SEED = 42
# Byte range of one CSV partition (dask reads a single large CSV in blocks of this size).
CSV_BLOCK_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class Cluster:
    """Where to train: a running scheduler's address, or a local cluster of N workers."""

    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    csv_block_bytes: int = CSV_BLOCK_BYTES


@contextmanager
def connect(cluster: Cluster) -> Iterator[Client]:
    """A client of the scheduler, or of a LocalCluster started (and stopped) here."""
    if cluster.scheduler:
        with Client(cluster.scheduler) as client:
            yield client
        return
    # The scheduler's and workers' INFO lines would drown the training log.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    local = LocalCluster(
        n_workers=cluster.workers or 2,
        threads_per_worker=cluster.threads_per_worker,
        processes=True,
        dashboard_address=None,  # no fixed port 8787 to collide on
    )
    with local, Client(local) as client:
        yield client


def partitions(data: Path) -> tuple[list[str], str]:
    """The impressions partitions under `data` and their format: impressions/*.parquet,
    impressions/*.csv, impressions-*.csv, or one impressions.csv read in byte ranges."""
    if not data.exists():
        raise DataError(f"no such data file or directory: {data}")
    directory = data if data.is_dir() else data.parent
    candidates = (
        ("parquet", sorted(directory.glob("impressions/*.parquet"))),
        ("csv", sorted(directory.glob("impressions/*.csv"))),
        ("csv", sorted(directory.glob("impressions-*.csv"))),
        ("csv", [directory / IMPRESSIONS_FILE] if (directory / IMPRESSIONS_FILE).is_file() else []),
    )
    if data.is_file():
        return [str(data)], "parquet" if data.suffix == ".parquet" else "csv"
    for kind, found in candidates:
        if found:
            return [str(p) for p in found], kind
    raise DataError(
        f"{data} holds no impressions partitions (impressions/*.parquet, impressions/*.csv, "
        f"impressions-*.csv or {IMPRESSIONS_FILE})"
    )


def read_partitions(paths: list[str], kind: str, block_bytes: int) -> dd.DataFrame:
    """Every column as text, blank = missing, exactly as read_text_csv reads one file."""
    if kind == "parquet":
        frame = dd.read_parquet(paths)
        text = pd.DataFrame({c: pd.Series(dtype=object) for c in frame.columns})
        return frame.map_partitions(_as_text, meta=text)
    return dd.read_csv(paths, dtype=str, keep_default_na=False, na_values=[""],
                       blocksize=block_bytes)  # fmt: skip


def _as_text(part: pd.DataFrame) -> pd.DataFrame:
    """Parquet's typed columns as the text a CSV holds (missing stays NaN), so that the same
    quality rules parse them."""
    out = pd.DataFrame(index=part.index)
    for column in part.columns:
        values = part[column]
        out[column] = values.map(str).where(values.notna(), np.nan).astype(object)
    return out


def _merged(reports: list[QualityReport]) -> QualityReport:
    """One report for the whole data set: the partitions' counts added up."""
    first = reports[0]
    results = [
        RuleResult(r.rule, r.column, sum(rep.results[i].rows for rep in reports))
        for i, r in enumerate(first.results)
    ]
    missing: dict[str, int] = {}
    for report in reports:
        for column, count in report.missing_values.items():
            missing[column] = missing.get(column, 0) + count
    return QualityReport(
        first.feature_set,
        sum(r.input_rows for r in reports),
        sum(r.kept_rows for r in reports),
        results,
        missing,
    )


def _checked(part: pd.DataFrame, max_bad: float, now: pd.Timestamp) -> pd.DataFrame:
    return check_quality(part.reset_index(drop=True), max_bad, now)[0]


def _report(part: pd.DataFrame, max_bad: float, now: pd.Timestamp) -> QualityReport:
    return check_quality(part.reset_index(drop=True), max_bad, now)[1]


def _features_frame(part: pd.DataFrame, encodings: Encodings, catalog: Catalog,
                    tables: ProductTables, names: tuple[str, ...]) -> pd.DataFrame:  # fmt: skip
    X = features_from_frame(part, encodings, catalog, tables, CANDIDATE_SET)
    return pd.DataFrame(X, columns=list(names))


def _labels(part: pd.DataFrame) -> pd.Series:
    return part[LABEL].astype(np.int64).reset_index(drop=True)


def train_distributed(
    settings: TrainSettings, cluster: Cluster, key: SigningKey | None = None
) -> dict[str, Any]:
    """Trains on the cluster and writes the bundle as `train` does; returns the manifest."""
    check_new_bundle(settings.out)
    if settings.feature_set not in (None, CANDIDATE_SET):
        raise DataError(
            f"--dask trains the {CANDIDATE_SET!r} feature set (the one the server serves); "
            f"{settings.feature_set!r} needs whole sessions on one machine"
        )
    if settings.calibration == "platt":
        raise DataError("--calibration platt is not available with --dask (use none or auto)")
    started = time.perf_counter()
    paths, kind = partitions(settings.data)
    directory = settings.data if settings.data.is_dir() else settings.data.parent
    # Task-based shuffles (drop_duplicates, unique): small here, and quiet.
    with connect(cluster) as client, dask.config.set({"dataframe.shuffle.method": "tasks"}):
        info = client.scheduler_info()
        log.info("dask cluster %s: %d workers; %d %s input file(s)", info["address"],
                 len(info["workers"]), len(paths), kind)  # fmt: skip
        raw = read_partitions(paths, kind, cluster.csv_block_bytes)
        now = pd.Timestamp.now(tz="UTC")
        reports = dask.compute(*[dask.delayed(_report)(p, settings.max_bad_fraction, now)
                                 for p in raw.to_delayed()])  # fmt: skip
        quality = _merged(list(reports))
        if quality.feature_set != CANDIDATE_SET:
            raise DataError("--dask trains impressions (rec_ columns); this is the notebook schema")
        log.info("data quality (%d partitions):\n%s", raw.npartitions, quality.to_text())
        meta = check_quality(raw.get_partition(0).head(200, compute=True),
                             settings.max_bad_fraction, now)[0].iloc[:0]  # fmt: skip
        clean = raw.map_partitions(_checked, settings.max_bad_fraction, now, meta=meta)
        clean = client.persist(clean)
        data = DataSet(
            frame=meta,
            feature_set=CANDIDATE_SET,
            csv_path=settings.data,
            catalog=_catalog(directory, clean),
            catalog_source=str(directory / CATALOG_FILE),
            quality=quality,
            generation=_generation(directory / IMPRESSIONS_FILE),  # generation.json beside it
        )
        # The split of single-machine training, drawn from two columns of every clean row.
        keys = clean[["session_id", LABEL]].compute().reset_index(drop=True)
        split = split_rows(keys, settings.split) if settings.split == SESSION_SPLIT else None
        if split is None:
            keys = clean[["session_id", LABEL, "timestamp"]].compute().reset_index(drop=True)
            split = split_rows(keys, settings.split)
        held_out = set(keys["session_id"].iloc[split.test].astype(str))
        is_test = clean["session_id"].astype(str).isin(held_out)
        train_rows = clean[~is_test]
        test_part = clean[is_test].compute().reset_index(drop=True)
        n_train = len(split.train)
        fraction = min(1.0, DRIVER_SAMPLE_ROWS / max(n_train, 1))
        sample = train_rows.sample(frac=fraction, random_state=SAMPLE_SEED).compute()
        sample = sample.reset_index(drop=True)

        encodings = _encodings(train_rows)
        catalog = catalog_from_frame(data.catalog)
        baskets = train_rows.map_partitions(session_baskets).drop_duplicates().compute()
        affinity = affinity_from_baskets(baskets.reset_index(drop=True))
        tables = tables_from_frame(catalog, affinity, settings.affinity_top_k)
        names = FEATURE_SETS[CANDIDATE_SET]
        features_meta = pd.DataFrame({n: pd.Series(dtype=np.float32) for n in names})
        X = train_rows.map_partitions(_features_frame, encodings, catalog, tables, names,
                                      meta=features_meta)  # fmt: skip
        y = train_rows.map_partitions(_labels, meta=pd.Series(dtype=np.int64, name=LABEL))
        X, y = client.persist([X, y])
        model = DaskLGBMClassifier(
            client=client,
            n_estimators=NUM_TREES,
            **{k: v for k, v in PARAMS.items() if k != "objective"},
            objective="binary",
            num_threads=cluster.threads_per_worker,
            monotone_constraints=monotone_constraints(names),
        )
        model.fit(X, y)
        booster = model.booster_
        holders = {w for held in client.who_has(X).values() for w in held}
        where = {"workers": len(holders), "partitions": X.npartitions, "input_files": len(paths),
                 "format": kind, "lightgbm": "lightgbm.dask.DaskLGBMClassifier",
                 "threads_per_worker": cluster.threads_per_worker}  # fmt: skip
        log.info("trained on %d rows in %d partitions held by %d workers", n_train,
                 X.npartitions, len(holders))  # fmt: skip
    fitted = Fitted(
        booster, CANDIDATE_SET, encodings, catalog, tables, affinity,
        features_from_frame(sample, encodings, catalog, tables, CANDIDATE_SET),
        features_from_frame(test_part, encodings, catalog, tables, CANDIDATE_SET),
    )  # fmt: skip
    fitted, calibration = calibrate(
        sample, test_part, fitted, replace(settings, calibration="none")
    )
    calibration["reason"] = "not fitted with --dask (a Platt step needs a second, held-back fit)"
    description = f"{split.description}; drawn on the driver from every clean row's session"
    parts = Parts(sample, test_part, description, len(keys), n_train,
                  int(keys["session_id"].iloc[split.train].nunique()), where)  # fmt: skip
    return finish(settings, key, data, parts, fitted, calibration, started)


def _catalog(directory: Path, clean: dd.DataFrame) -> pd.DataFrame:
    path = directory / CATALOG_FILE
    if path.is_file():
        return _load_catalog(path)
    columns = ["current_product_id", "current_category", "current_price",
               "rec_product_id", "rec_category", "rec_price"]  # fmt: skip
    return catalog_from_impressions(clean[columns].compute())


def _encodings(train: dd.DataFrame) -> Encodings:
    """The vocabularies of fit_encodings: sorted distinct values of the training rows."""
    columns = ("current_category", "rec_category", "device_type", "traffic_source")
    distinct = dask.compute(*[train[c].dropna().astype(str).unique() for c in columns])
    seen = dict(zip(columns, distinct, strict=True))
    categories = np.concatenate([np.asarray(seen["current_category"]),
                                 np.asarray(seen["rec_category"])])  # fmt: skip
    return Encodings(
        category=Vocabulary.fit(categories),
        device_type=Vocabulary.fit(np.asarray(seen["device_type"])),
        traffic_source=Vocabulary.fit(np.asarray(seen["traffic_source"])),
    )
