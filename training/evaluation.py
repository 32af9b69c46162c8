"""The held-out evaluation: every ranker against the simulator's ceiling, with 95% intervals.

Rankers: the trained model, the popularity and batch (context-free) baselines, a random ranker
and, on generated data, the simulator's own click probability (the ceiling) and the best a
context-free model could do (the candidate and the customer's true favourite category). All of
them are scored on the shown slate (the impressions held out) and, for candidate feature sets,
on the whole eligible catalog of each held-out page view. Every headline number carries a
session-bootstrapped 95% interval; comparisons (model / ceiling) are paired on the same
replicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import CANDIDATE_SETS, SERVING_SLOT, Catalog, Encodings, ProductTables
from training.baselines import BatchModel, PopularityRanker
from training.bootstrap import (
    NONE,
    Bootstrap,
    Bound,
    Interval,
    Statistic,
    ratio,
    replicates_for,
    weighted_auc,
    weighted_log_loss,
    weighted_mean,
)
from training.catalog_ranking import (
    TOP,
    CatalogPages,
    catalog_blocks,
    per_page_metrics,
    sample_fields,
)
from training.features import features_from_frame
from training.metrics import (
    NOT_APPLICABLE,
    TOP_K,
    auc_or_none,
    classification_metrics,
    coverage_curve,
    slate_metrics,
    top_share,
)
from training.model import predict
from training.pages import PageViews, page_views
from training.schema import LABEL, SIM_CONTEXT_FREE, SIM_PROBABILITY
from training.truth import Truth

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MODEL = "session-aware model"
POPULARITY = "popularity"
BATCH = "batch (context-free)"
RANDOM = "random"
CEILING = "simulator ceiling"
CONTEXT_FREE = "context-free ceiling"
RANDOM_SEED = 13
SEGMENT_COLUMNS = ("device_type", "traffic_source")
COVERAGE_GRID: tuple[float, ...] = tuple(float(c) for c in np.round(np.linspace(0.02, 1, 50), 2))
# A data set with fewer rows or sessions than this gets a warning: its metrics are mostly noise.
MIN_ROWS, MIN_SESSIONS = 1_000, 200


@dataclass(frozen=True)
class Fitted:
    """The trained model and what it was trained with."""

    booster: lgb.Booster
    feature_set: str
    encodings: Encodings
    catalog: Catalog | None
    tables: ProductTables | None
    affinity: pd.DataFrame | None
    X_train: npt.NDArray[np.float32]
    X_test: npt.NDArray[np.float32]


@dataclass
class Evaluation:
    """metrics.json's evaluation part, and what the plots draw."""

    metrics: dict[str, Any]
    y: npt.NDArray[np.int64]
    scores: dict[str, F64]  # held-out shown rows, per ranker
    coverage: dict[str, list[float | None]] = field(default_factory=dict)  # CTR per grid point
    coverage_grid: tuple[float, ...] = ()


class _Resampled:
    """One bootstrap shared by every statistic: rows and pages know their session."""

    def __init__(self, row_session: I64, rows: int) -> None:
        self.row_session = row_session
        self.boot = Bootstrap.draw(int(row_session.max()) + 1, replicates_for(rows))

    def rows(self, statistic: Statistic, mask: npt.NDArray[np.bool_] | None = None) -> Interval:
        """Interval of a statistic over rows (optionally only the masked rows)."""
        units = self.row_session if mask is None else self.row_session[mask]
        return self.boot.interval(statistic, units)

    def mean(self, values: F64, units: I64 | None = None) -> Interval:
        """Interval of a mean of per-row (or per-page, with units) values; NaN ignored."""
        return self.boot.interval(
            weighted_mean(values), self.row_session if units is None else units
        )


def evaluate(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fitted: Fitted,
    catalog_data: pd.DataFrame | None,
    truth: Truth | str,
    threshold: float,
    num_threads: int,
) -> Evaluation:
    """The held-out evaluation of a fitted model (metrics.json content and plot data)."""
    y = test[LABEL].to_numpy()
    candidate = fitted.feature_set in CANDIDATE_SETS
    scores: dict[str, F64] = {MODEL: predict(fitted.booster, fitted.X_test)}
    batch: BatchModel | None = None
    popularity: PopularityRanker | None = None
    if candidate and catalog_data is not None:
        popularity = PopularityRanker.fit(train)
        batch = BatchModel.fit(train, catalog_data, fitted.encodings, num_threads)
        scores[POPULARITY] = popularity.score(test)
        scores[BATCH] = batch.score(test)
    scores[RANDOM] = np.random.default_rng(RANDOM_SEED).random(len(test))
    if SIM_PROBABILITY in test.columns:
        scores[CEILING] = test[SIM_PROBABILITY].to_numpy(np.float64)
    if SIM_CONTEXT_FREE in test.columns:
        scores[CONTEXT_FREE] = test[SIM_CONTEXT_FREE].to_numpy(np.float64)

    row_session = pd.factorize(test["session_id"].astype(str))[0].astype(np.int64)
    resampled = _Resampled(row_session, len(test))
    base_rate = float(train[LABEL].mean())
    metrics = classification_metrics(y, scores[MODEL], threshold)
    metrics["bootstrap"] = {
        "unit": "session",
        "replicates": resampled.boot.replicates,
        "level": 0.95,
        "held_out_sessions": int(row_session.max()) + 1,
    }
    n_test_sessions = int(row_session.max()) + 1
    metrics["warnings"] = size_warnings(
        len(train) + len(test),
        int(train["session_id"].nunique()) + n_test_sessions,
        len(test),
        n_test_sessions,
    )
    metrics["shown"] = {name: _shown(y, s, threshold, resampled) for name, s in scores.items()}
    metrics["intervals"] = metrics["shown"][MODEL]
    metrics["ceiling"] = _ceiling_summary(y, scores, base_rate, resampled, truth)
    coverage = metrics["shown_at_threshold"] / max(len(y), 1)
    metrics["equal_coverage"] = {
        "coverage": coverage,
        "rows": round(coverage * len(y)),
        "ctr": {
            name: resampled.mean(np.where(top_share(s, coverage), y, np.nan)).to_dict()
            for name, s in scores.items()
        },
    }
    pages = page_views(test)
    no_candidate = f"{NOT_APPLICABLE}: the notebook schema has no candidate product"
    if candidate:
        metrics["slate"] = _slate(pages, y, scores, resampled)
        model_slate = metrics["slate"]["rankers"][MODEL]
        metrics["ranking"] = {
            "page_views": metrics["slate"]["page_views"],
            f"hit_rate_at_{TOP_K}": model_slate[f"hit_rate_at_{TOP_K}"]["value"],
            f"ndcg_at_{TOP_K}": model_slate[f"ndcg_at_{TOP_K}"]["value"],
            f"random_hit_rate_at_{TOP_K}": metrics["slate"]["random_floor"]["value"],
        }
    else:  # every candidate of a page view gets the same score: nothing to rank
        metrics["slate"] = metrics["ranking"] = no_candidate
    metrics["segments"] = {
        column: _segments(test[column].astype(str).to_numpy(), y, scores[MODEL], resampled)
        for column in SEGMENT_COLUMNS
    }
    if candidate and fitted.catalog is not None and popularity is not None and batch is not None:
        metrics["catalog"] = _catalog(
            train, test, pages, fitted, truth, popularity, batch, resampled
        )
    else:
        metrics["catalog"] = no_candidate
    baselines: dict[str, Any] = {}
    for name, key in ((POPULARITY, "popularity"), (BATCH, "batch")):
        if name not in scores:
            baselines[key] = no_candidate
            continue
        baselines[key] = classification_metrics(y, scores[name], threshold)
        slate = metrics["slate"]["rankers"][name]
        baselines[key]["ranking"] = {
            "page_views": metrics["slate"]["page_views"],
            f"hit_rate_at_{TOP_K}": slate[f"hit_rate_at_{TOP_K}"]["value"],
            f"ndcg_at_{TOP_K}": slate[f"ndcg_at_{TOP_K}"]["value"],
        }
    metrics["baselines"] = baselines
    curves = {name: coverage_curve(y, s, COVERAGE_GRID) for name, s in scores.items()}
    return Evaluation(metrics, y, scores, curves, COVERAGE_GRID)


def size_warnings(rows: int, sessions: int, test_rows: int, test_sessions: int) -> list[str]:
    """Warnings for a data set too small to trust."""
    if rows >= MIN_ROWS and sessions >= MIN_SESSIONS:
        return []
    return [
        f"only {rows} rows from {sessions} sessions (fewer than {MIN_ROWS} rows or "
        f"{MIN_SESSIONS} sessions; {test_rows} rows from {test_sessions} sessions held out): "
        "the metrics below are dominated by noise; read the interval widths before anything "
        "else"
    ]


def _shown(y: F64, s: F64, threshold: float, resampled: _Resampled) -> dict[str, Any]:
    """AUC, log loss and CTR at the threshold (with its count) of one ranker, with intervals."""
    selected = s >= threshold
    return {
        "auc": resampled.rows(weighted_auc(y, s)).to_dict(),
        "log_loss": resampled.rows(weighted_log_loss(y, s)).to_dict(),
        "shown_at_threshold": int(selected.sum()),
        "ctr_at_threshold": resampled.mean(np.where(selected, y, np.nan)).to_dict(),
    }


def _ceiling_summary(
    y: F64, scores: dict[str, F64], base_rate: float, resampled: _Resampled, truth: Truth | str
) -> dict[str, Any]:
    """The model as a fraction of the ceiling: AUC ratio, share of the achievable log-loss gain."""
    if CEILING not in scores:
        return {
            "available": False,
            "reason": "not generated data: real data have no simulator probability",
        }
    model, ceiling = scores[MODEL], scores[CEILING]
    constant = np.full(len(y), base_rate)

    def gain_share(units: I64) -> Bound:
        base, ours, best = (weighted_log_loss(y, s)(units) for s in (constant, model, ceiling))

        def bound(counts: F64) -> F64:
            floor = base(counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                return (floor - ours(counts)) / (floor - best(counts))

        return bound

    summary: dict[str, Any] = {
        "available": True,
        "model_auc_fraction": resampled.rows(
            ratio(weighted_auc(y, model), weighted_auc(y, ceiling))
        ).to_dict(),
        "model_log_loss_gain_share": resampled.rows(gain_share).to_dict(),
        "catalog": truth if isinstance(truth, str) else "available",
    }
    if CONTEXT_FREE in scores:
        context_free = ratio(weighted_auc(y, scores[CONTEXT_FREE]), weighted_auc(y, ceiling))
        summary["context_free_auc_fraction"] = resampled.rows(context_free).to_dict()
    return summary


def _slate(
    pages: PageViews, y: F64, scores: dict[str, F64], resampled: _Resampled
) -> dict[str, Any]:
    """Hit rate and NDCG @3 of each ranker on the shown slate, beside the random floor."""
    units = pages.session
    out: dict[str, Any] = {"rankers": {}}
    floor = None
    for name, s in scores.items():
        per_page = slate_metrics(pages, y, s)
        floor = per_page[f"random_hit_rate_at_{TOP_K}"]
        out["rankers"][name] = {
            key: resampled.mean(per_page[key], units).to_dict()
            for key in (f"hit_rate_at_{TOP_K}", f"ndcg_at_{TOP_K}")
        }
    assert floor is not None
    out["page_views"] = int(np.isfinite(floor).sum())
    out["mean_candidates"] = float(np.bincount(pages.row_page).mean()) if len(pages) else 0.0
    out["random_floor"] = resampled.mean(floor, units).to_dict()
    return out


def _segments(
    segment: npt.NDArray[np.str_], y: F64, s: F64, resampled: _Resampled
) -> dict[str, dict[str, Any]]:
    """Per segment value: rows, click rate, mean score and AUC with its interval."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(segment.tolist())):
        mask = segment == name
        auc = (
            resampled.rows(weighted_auc(y[mask], s[mask]), mask).to_dict()
            if auc_or_none(y[mask], s[mask]) is not None
            else NONE.to_dict()
        )
        out[name] = {
            "rows": int(mask.sum()),
            "ctr": float(y[mask].mean()),
            "mean_score": float(s[mask].mean()),
            "auc": auc,
        }
    return out


def _catalog(
    train: pd.DataFrame,
    test: pd.DataFrame,
    pages: PageViews,
    fitted: Fitted,
    truth: Truth | str,
    popularity: PopularityRanker,
    batch: BatchModel,
    resampled: _Resampled,
) -> dict[str, Any]:
    """Whole-catalog ranking of each ranker per held-out page view, with intervals."""
    assert fitted.catalog is not None and fitted.tables is not None
    catalog = fitted.catalog
    chosen = CatalogPages.of(test, pages, catalog)
    shape = (len(chosen), len(catalog))
    scores: dict[str, F64] = {name: np.empty(shape) for name in (MODEL, POPULARITY, BATCH)}
    for block, frame in catalog_blocks(test, pages, chosen, catalog, SERVING_SLOT):
        X = features_from_frame(frame, fitted.encodings, catalog, fitted.tables, fitted.feature_set)
        scores[MODEL][block] = predict(fitted.booster, X).reshape(-1, len(catalog))
        scores[POPULARITY][block] = popularity.score(frame).reshape(-1, len(catalog))
        scores[BATCH][block] = batch.score(frame).reshape(-1, len(catalog))
    scores[RANDOM] = np.random.default_rng(RANDOM_SEED).random(shape)
    relevance, context_free_pages = None, 0
    if isinstance(truth, Truth):
        relevance, favourite = truth.catalog_relevance(test, pages, chosen.page)
        scores[CEILING] = relevance
        table, context_free_pages = truth.context_free_table(train, page_views(train))
        scores[CONTEXT_FREE] = table[favourite]
    units = chosen.session
    per_ranker = {name: per_page_metrics(s, chosen, relevance) for name, s in scores.items()}
    out: dict[str, Any] = {
        "page_views": len(chosen),
        **sample_fields(len(pages), len(catalog)),
        "sessions": len(np.unique(units)),
        "mean_eligible": float(chosen.eligible.sum(axis=1).mean()) if len(chosen) else 0.0,
        "simulator": "available" if relevance is not None else str(truth),
        "context_free_pages": context_free_pages,
        "rankers": {
            name: {key: resampled.mean(v, units).to_dict() for key, v in per_page.items()}
            for name, per_page in per_ranker.items()
        },
    }
    if relevance is not None:
        out["fraction_of_ceiling"] = {
            name: {
                key: resampled.boot.interval(
                    ratio(weighted_mean(v), weighted_mean(per_ranker[CEILING][key])), units
                ).to_dict()
                for key, v in per_page.items()
                if not key.startswith("share_at")
            }
            for name, per_page in per_ranker.items()
            if name != CEILING
        }
    out["top"] = TOP
    return out
