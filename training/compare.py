"""`python -m training compare`: feature sets trained on one split, differences with intervals.

Every feature set is trained on the same training sessions and judged on the same held-out
sessions; the intervals of the differences come from the same session-bootstrap replicates
for both (a paired comparison), so they are much narrower than the two intervals side by side.
No calibration step is fitted: the comparison is of the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import SERVING_SLOT
from training.bootstrap import (
    Bootstrap,
    Interval,
    Statistic,
    difference,
    ratio,
    replicates_for,
    weighted_auc,
    weighted_log_loss,
    weighted_mean,
)
from training.catalog_ranking import CatalogPages, catalog_blocks, per_page_metrics
from training.dataset import load_dataset
from training.features import features_from_frame
from training.metrics import slate_metrics, top_share
from training.model import predict
from training.pages import page_views
from training.pipeline import feature_set_of, fit
from training.schema import LABEL, SIM_PROBABILITY
from training.truth import Truth

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Metric:
    """One compared metric: its label and, per feature set, (statistic, bootstrap units)."""

    label: str
    per_set: dict[str, tuple[Statistic, npt.NDArray[np.int64]]]


def compare(
    data_path: Path,
    feature_sets: Sequence[str],
    split: str,
    threshold: float,
    threads: int,
) -> list[str]:
    """Trains each feature set on one split; returns markdown table lines (first set = base)."""
    data = load_dataset(data_path)
    for name in feature_sets:
        feature_set_of(data, name)  # refuses a set the data cannot train
    from training.split import split_rows  # noqa: PLC0415 - scikit-learn, only when run

    parts = split_rows(data.frame, split)
    train = data.frame.iloc[parts.train].reset_index(drop=True)
    test = data.frame.iloc[parts.test].reset_index(drop=True)
    y = test[LABEL].to_numpy()
    row_session = pd.factorize(test["session_id"].astype(str))[0].astype(np.int64)
    boot = Bootstrap.draw(int(row_session.max()) + 1, replicates_for(len(test)))
    fitted = {name: fit(data, train, test, name, threads) for name in feature_sets}
    shown = {name: predict(f.booster, f.X_test) for name, f in fitted.items()}
    pages = page_views(test)
    metrics = [
        _Metric(
            "AUC (shown slate)", {n: (weighted_auc(y, s), row_session) for n, s in shown.items()}
        ),
        _Metric(
            "log loss (shown slate)",
            {n: (weighted_log_loss(y, s), row_session) for n, s in shown.items()},
        ),
    ]
    if SIM_PROBABILITY in test.columns:
        ceiling = weighted_auc(y, test[SIM_PROBABILITY].to_numpy(np.float64))
        metrics.append(
            _Metric(
                "AUC / ceiling AUC",
                {n: (ratio(weighted_auc(y, s), ceiling), row_session) for n, s in shown.items()},
            )
        )
    base = feature_sets[0]
    coverage = float((shown[base] >= threshold).mean())
    metrics.append(
        _Metric(
            f"CTR of the top {coverage:.1%} of rows (the {base} set's coverage at {threshold})",
            {
                n: (weighted_mean(np.where(top_share(s, coverage), y, np.nan)), row_session)
                for n, s in shown.items()
            },
        )
    )
    slate = {n: slate_metrics(pages, y, s) for n, s in shown.items()}
    metrics.append(
        _Metric(
            "hit rate @3 (shown slate)",
            {n: (weighted_mean(v["hit_rate_at_3"]), pages.session) for n, v in slate.items()},
        )
    )
    first = fitted[base]
    if first.catalog is not None and first.tables is not None:
        catalog = first.catalog
        chosen = CatalogPages.of(test, pages, catalog)
        truth = Truth.of(data.frame, data.catalog, data.generation)
        relevance = (
            truth.catalog_relevance(test, pages, chosen.page)[0]
            if isinstance(truth, Truth)
            else None
        )
        scores = {name: np.empty((len(chosen), len(catalog))) for name in fitted}
        for block, frame in catalog_blocks(test, pages, chosen, catalog, SERVING_SLOT):
            for name, f in fitted.items():
                X = features_from_frame(frame, f.encodings, catalog, f.tables, name)
                scores[name][block] = predict(f.booster, X).reshape(-1, len(catalog))
        per_page = {name: per_page_metrics(s, chosen, relevance) for name, s in scores.items()}
        for key in per_page[base]:
            metrics.append(
                _Metric(
                    f"whole catalog: {key.replace('_', ' ')}",
                    {n: (weighted_mean(v[key]), chosen.session) for n, v in per_page.items()},
                )
            )
    return _table(metrics, feature_sets, boot, len(test), parts.description)


def _table(
    metrics: list[_Metric],
    feature_sets: Sequence[str],
    boot: Bootstrap,
    rows: int,
    split: str,
) -> list[str]:
    base, others = feature_sets[0], feature_sets[1:]
    header = ["metric", *feature_sets, *(f"{o} - {base}" for o in others)]
    lines = [
        f"Held out: {rows} rows; split: {split}; 95% paired session-bootstrap intervals "
        f"({boot.replicates} replicates).",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---|" * (len(header) - 1),
    ]
    for metric in metrics:
        cells = [metric.label]
        for name in feature_sets:
            statistic, units = metric.per_set[name]
            cells.append(_fmt(boot.interval(statistic, units)))
        base_stat, units = metric.per_set[base]
        for name in others:
            cells.append(_fmt(boot.interval(difference(metric.per_set[name][0], base_stat), units)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fmt(interval: Interval) -> str:
    if interval.value is None:
        return "n/a"
    if interval.low is None or interval.high is None:
        return f"{interval.value:.4f}"
    return f"{interval.value:.4f} [{interval.low:.4f}, {interval.high:.4f}]"
