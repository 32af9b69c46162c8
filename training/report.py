"""The human-readable evaluation: PNG plots and report.md, from the computed metrics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from sklearn.metrics import precision_recall_curve, roc_curve

from training.metrics import NOT_APPLICABLE, TOP_K

PLOTS = {
    "roc": "roc.png",
    "precision_recall": "precision_recall.png",
    "ctr_by_threshold": "ctr_by_threshold.png",
    "feature_importance": "feature_importance.png",
}

Scores = Mapping[str, npt.NDArray[np.float64]]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    # A fixed Software entry and no date keep the PNG bytes the same run to run.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_plots(
    out_dir: Path,
    y: npt.NDArray[np.int64],
    scores: Scores,
    importance: Mapping[str, float],
) -> list[str]:
    """ROC, precision-recall, CTR by threshold (one line per ranker) and feature importance."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (held out)")
    ax.legend(loc="lower right")
    _save(fig, out_dir / PLOTS["roc"])

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, label=name)
    ax.axhline(y.mean(), color="k", linestyle=":", linewidth=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (held out)")
    ax.legend(loc="lower left")
    _save(fig, out_dir / PLOTS["precision_recall"])

    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.round(np.arange(0.30, 0.951, 0.05), 2)
    for name, s in scores.items():
        ctr = [y[s >= t].mean() if (s >= t).any() else np.nan for t in grid]
        ax.plot(grid, ctr, marker="o", markersize=3, label=name)
    ax.axhline(y.mean(), color="k", linestyle=":", linewidth=1, label="baseline CTR")
    ax.set(
        xlabel="confidence threshold",
        ylabel="CTR of recommendations shown",
        title="CTR by threshold",
    )
    ax.legend(loc="upper left")
    _save(fig, out_dir / PLOTS["ctr_by_threshold"])

    names = sorted(importance, key=lambda k: importance[k])
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(names))))
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="total gain", title="Feature importance (gain)")
    _save(fig, out_dir / PLOTS["feature_importance"])
    return list(PLOTS.values())


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ranker_row(name: str, m: Mapping[str, Any] | str) -> str:
    if isinstance(m, str):
        return f"| {name} | {m} | | | | | | |"
    ranking = m.get("ranking")
    if isinstance(ranking, Mapping):
        hit, ndcg = _num(ranking[f"hit_rate_at_{TOP_K}"]), _num(ranking[f"ndcg_at_{TOP_K}"])
    else:
        hit = ndcg = NOT_APPLICABLE
    return (
        f"| {name} | {_num(m['auc'])} | {_pct(m['accuracy'])} | {m['shown_at_threshold']} "
        f"| {_pct(m['ctr_at_threshold'])} | {_pct(m['lift_at_threshold'])} | {hit} | {ndcg} |"
    )


def render_report(metrics: Mapping[str, Any], manifest_info: Mapping[str, Any]) -> str:
    """report.md: headline, comparison with the baselines, thresholds, segments, projection."""
    threshold = metrics["threshold"]
    lines = [
        f"# Click model report: {manifest_info['version']}",
        "",
        f"Data: `{manifest_info['data']}` ({metrics['feature_set']} feature set), "
        f"{metrics['rows']['train']} training rows, {metrics['rows']['test']} held-out rows. "
        f"Split: {manifest_info['split']}.",
        "",
        "## Headline (held out)",
        "",
        f"- AUC {_num(metrics['auc'])}, accuracy {_pct(metrics['accuracy'])} at 0.5.",
        f"- Baseline CTR {_pct(metrics['baseline_ctr'])}; CTR of recommendations scoring >= "
        f"{threshold}: {_pct(metrics['ctr_at_threshold'])} ({metrics['shown_at_threshold']} "
        f"rows shown), lift {_pct(metrics['lift_at_threshold'])}.",
        "",
        "## Session-aware model against the baselines",
        "",
        f"| ranker | AUC | accuracy | shown @ {threshold} | CTR @ {threshold} "
        f"| lift @ {threshold} | hit rate @{TOP_K} | NDCG @{TOP_K} |",
        "|---|---|---|---|---|---|---|---|",
        _ranker_row("session-aware model", metrics),
    ]
    for name, m in metrics["baselines"].items():
        lines.append(_ranker_row(f"{name} baseline", m))
    ranking = metrics.get("ranking")
    if isinstance(ranking, Mapping):
        lines += [
            "",
            f"Ranking quality is measured per held-out page view with at least one click "
            f"({ranking['page_views']} page views): hit rate = a clicked candidate is in the "
            f"top {TOP_K}; NDCG with one unit of gain per click.",
        ]
    else:
        lines += ["", f"Ranking metrics: {NOT_APPLICABLE} (one row per session, no candidates)."]
    lines += [
        "",
        "## Confidence thresholds",
        "",
        "| threshold | shown | share shown | clicks | CTR |",
        "|---|---|---|---|---|",
    ]
    for row in metrics["threshold_table"]:
        lines.append(
            f"| {row['threshold']} | {row['shown']} | {_pct(row['share_shown'])} "
            f"| {row['clicks']} | {_pct(row['ctr'])} |"
        )
    lines += ["", "## Segments", ""]
    for column, segments in metrics["segments"].items():
        lines += [f"| {column} | rows | CTR | mean score | AUC |", "|---|---|---|---|---|"]
        for name, s in segments.items():
            lines.append(
                f"| {name} | {s['rows']} | {_pct(s['ctr'])} | {_num(s['mean_score'])} "
                f"| {_num(s['auc'])} |"
            )
        lines.append("")
    story = metrics.get("live_session_example")
    if isinstance(story, Mapping):
        lines += [
            "## Live-session example",
            "",
            story["description"],
            "",
            "| rank | product | name | subcategory | click probability |",
            "|---|---|---|---|---|",
        ]
        for i, row in enumerate(story["top"], 1):
            lines.append(
                f"| {i} | {row['product_id']} | {row['name']} | {row['subcategory']} "
                f"| {row['score']:.3f} |"
            )
        lines.append("")
    projection = metrics["business_projection"]
    a = projection["assumptions"]
    lines += [
        "## Business projection (a projection, not a measurement)",
        "",
        f"Assumptions (flags): {a['sessions_per_day']:,.0f} sessions/day, "
        f"{a['recs_per_session']:g} recommendations per session, ${a['value_per_click']:.2f} "
        "per click; every recommendation shown clicks at the held-out rate. The confident line "
        f"also assumes enough candidates clear {threshold} to fill every slot (on held-out "
        f"data {_pct(metrics['shown_at_threshold'] / max(metrics['rows']['test'], 1))} of the "
        "candidates shown did).",
        "",
        f"- Baseline: {projection['baseline_clicks_per_day']:,.0f} clicks/day, "
        f"${projection['baseline_value_per_day']:,.0f}/day.",
    ]
    if "model_value_per_day" in projection:
        lines += [
            f"- Confident recommendations only (score >= {threshold}): "
            f"{projection['model_clicks_per_day']:,.0f} clicks/day, "
            f"${projection['model_value_per_day']:,.0f}/day "
            f"(+${projection['extra_value_per_day']:,.0f}/day, "
            f"+${projection['extra_value_per_year']:,.0f}/year).",
        ]
    quality = metrics["data_quality"]
    lines += [
        "",
        "## Data quality",
        "",
        f"Kept {quality['kept_rows']} of {quality['input_rows']} rows "
        f"({quality['dropped_rows']} dropped).",
        "",
        "| rule | column | rows dropped |",
        "|---|---|---|",
        *(f"| {r['rule']} | {r['column']} | {r['rows']} |" for r in quality["rules"]),
        "",
        "## Plots",
        "",
        *(f"![{name}]({file})" for name, file in PLOTS.items()),
        "",
    ]
    return "\n".join(lines)
