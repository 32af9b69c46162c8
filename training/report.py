"""The human-readable evaluation: PNG plots and report.md, from the computed metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from training.evaluation import CEILING, MODEL, Evaluation
from training.metrics import TOP_K

PLOTS = {
    "roc": "roc.png",
    "precision_recall": "precision_recall.png",
    "ctr_by_threshold": "ctr_by_threshold.png",
    "coverage_ctr": "coverage_ctr.png",
    "reliability": "reliability.png",
    "feature_importance": "feature_importance.png",
}


def _finish(fig: Any, ax: Any, path: Path, legend: str, **labels: str) -> None:
    """Labels the axes, places the legend and writes the figure."""
    ax.set(**labels)
    ax.legend(loc=legend, fontsize=7)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    # A fixed Software entry and no date keep the PNG bytes the same run to run.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _wilson(clicks: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a click rate (for error bars on small counts)."""
    if not n:
        return (np.nan, np.nan)
    z, p = 1.96, clicks / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def write_plots(
    out_dir: Path,
    evaluation: Evaluation,
    importance: Sequence[Mapping[str, Any]],
    calibration: Mapping[str, Any],
) -> list[str]:
    """ROC, precision-recall, CTR by threshold, coverage-CTR, reliability, feature importance."""
    y, scores = evaluation.y, evaluation.scores
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", linewidth=1)
    _finish(
        fig,
        ax,
        out_dir / PLOTS["roc"],
        "lower right",
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC (held out)",
    )

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, label=name)
    ax.axhline(y.mean(), color="k", linestyle=":", linewidth=1, label="base rate")
    _finish(
        fig,
        ax,
        out_dir / PLOTS["precision_recall"],
        "lower left",
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall (held out)",
    )

    fig, ax = plt.subplots(figsize=(7, 4))
    grid = np.round(np.arange(0.30, 0.951, 0.05), 2)
    for name in (MODEL, CEILING):
        if name not in scores:
            continue
        s = scores[name]
        counts = [int((s >= t).sum()) for t in grid]
        clicks = [int(y[s >= t].sum()) for t in grid]
        ctr = [c / n if n else np.nan for c, n in zip(clicks, counts, strict=True)]
        bounds = np.array([_wilson(c, n) for c, n in zip(clicks, counts, strict=True)])
        errors = np.abs(bounds.T - np.array(ctr))
        ax.errorbar(grid, ctr, yerr=errors, marker="o", markersize=3, capsize=2, label=name)
        if name == MODEL:
            for t, r, n in zip(grid, ctr, counts, strict=True):
                if n:
                    ax.annotate(
                        f"n={n}", (t, r), fontsize=6, xytext=(2, -9), textcoords="offset points"
                    )
    ax.axhline(y.mean(), color="k", linestyle=":", linewidth=1, label="baseline CTR")
    _finish(
        fig,
        ax,
        out_dir / PLOTS["ctr_by_threshold"],
        "upper left",
        xlabel="confidence threshold",
        ylabel="CTR of recommendations shown",
        title="CTR by threshold (95% Wilson intervals; n = rows at or above)",
    )

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in evaluation.coverage.items():
        values = [np.nan if v is None else v for v in curve]
        ax.plot(evaluation.coverage_grid, values, label=name)
    coverage = evaluation.metrics["equal_coverage"]["coverage"]
    ax.axvline(
        coverage, color="k", linestyle=":", linewidth=1, label="model's coverage at threshold"
    )
    _finish(
        fig,
        ax,
        out_dir / PLOTS["coverage_ctr"],
        "upper right",
        xlabel="share of held-out rows shown (each ranker's top)",
        ylabel="CTR of the rows shown",
        title="Coverage-CTR: every ranker at every coverage",
    )

    fig, ax = plt.subplots(figsize=(5, 5))
    curves = [("model", calibration["reliability"])]
    if "platt" in calibration:
        curves.append(("after Platt", calibration["platt"]["held_out_reliability_after"]))
    for label, bins in curves:
        shown = [b for b in bins if b["rows"]]
        ax.plot(
            [b["predicted"] for b in shown],
            [b["observed"] for b in shown],
            marker="o",
            label=label,
        )
        if label == "model":
            for b in shown:
                ax.annotate(f"{b['rows']}", (b["predicted"], b["observed"]), fontsize=6)
    ax.plot([0, 1], [0, 1], "k:", linewidth=1, label="perfect")
    _finish(
        fig,
        ax,
        out_dir / PLOTS["reliability"],
        "upper left",
        xlabel="mean predicted probability (bin)",
        ylabel="observed click rate",
        title=f"Reliability (ECE {calibration['ece']:.3f}; labels = rows per bin)",
    )

    ordered = sorted(importance, key=lambda r: r["gain"])
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(ordered))))
    ax.barh([r["feature"] for r in ordered], [r["gain"] for r in ordered])
    ax.set(xlabel="total gain", title="Feature importance (gain)")
    _save(fig, out_dir / PLOTS["feature_importance"])
    return list(PLOTS.values())


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(interval: Mapping[str, Any] | None, digits: int = 3, percent: bool = False) -> str:
    """'value [low, high]' of an interval dict."""
    if not interval or interval.get("value") is None:
        return "n/a"
    show = (lambda v: _pct(v, digits - 2)) if percent else (lambda v: _num(v, digits))
    if interval.get("low") is None:
        return show(interval["value"])
    return f"{show(interval['value'])} [{show(interval['low'])}, {show(interval['high'])}]"


def _opening(metrics: Mapping[str, Any], manifest_info: Mapping[str, Any]) -> list[str]:
    """The first paragraph: what the data are, what the ceiling is, how close the model gets."""
    data = metrics["data"]
    ceiling = metrics["ceiling"]
    rows = metrics["rows"]
    size = (
        f"{rows['train']} training rows ({rows['train_sessions']} sessions) and {rows['test']} "
        f"held-out rows ({rows['test_sessions']} sessions) of `{manifest_info['data']}`, "
        f"{metrics['feature_set']} feature set; split: {manifest_info['split']}."
    )
    if not data["generated"]:
        return [
            "**These data are not generated by this project's simulator** (no generation.json "
            "beside them): no click-probability ceiling is known, so the numbers below can only "
            "be compared with the baselines. " + size
        ]
    text = (
        f"**These data are GENERATED** by the shopper simulator (`python -m training "
        f"generate`, seed {data['seed']}, simulator version {data['simulator_version']}): "
        "every number below describes simulated shoppers, not real ones, and the simulator's "
        "click rule shares much of its structure with the model's features. "
    )
    if ceiling.get("available"):
        shown = metrics["shown"]
        text += (
            f"The simulator's own click probability (the ceiling no model can beat) reaches AUC "
            f"{_ci(shown[CEILING]['auc'])}; the model reaches {_ci(shown[MODEL]['auc'])}, "
            f"**{_ci(ceiling['model_auc_fraction'])} of the ceiling** "
            "(95% session-bootstrap intervals). "
        )
        catalog = metrics.get("catalog")
        if isinstance(catalog, Mapping) and "share_at_10" in catalog["rankers"].get(MODEL, {}):
            text += (
                "Ranking the whole eligible catalog, the model's top 10 collects "
                f"**{_ci(catalog['rankers'][MODEL]['share_at_10'])}** "
                "of the clicks the ceiling's top 10 would expect. "
            )
    else:
        text += f"The ceiling is not available: {ceiling.get('reason')}. "
    return [text + size]


def _head(*columns: str) -> list[str]:
    """A markdown table's header and separator lines."""
    return [_row(list(columns)), "|" + "---|" * len(columns)]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render_report(metrics: Mapping[str, Any], manifest_info: Mapping[str, Any]) -> str:
    """report.md: what the data are, the ceiling, every ranker with intervals, calibration."""
    threshold = metrics["threshold"]
    shown = metrics["shown"]
    lines = [
        f"# Click model report: {manifest_info['version']}",
        "",
        *_opening(metrics, manifest_info),
        "",
    ]
    for warning in metrics["warnings"]:
        lines += [f"> **Warning:** {warning}", ""]
    boot = metrics["bootstrap"]
    lines += [
        "## Held-out rankers on the shown slate",
        "",
        f"Intervals: 95%, {boot['replicates']} bootstrap resamples of the "
        f"{boot['held_out_sessions']} held-out sessions (rows of one session move together).",
        "",
        _row(["ranker", "AUC", "log loss", f"rows >= {threshold}", f"CTR of rows >= {threshold}"]),
        "|---|---|---|---|---|",
    ]
    for name, m in shown.items():
        lines.append(
            _row(
                [
                    name,
                    _ci(m["auc"]),
                    _ci(m["log_loss"]),
                    str(m["shown_at_threshold"]),
                    _ci(m["ctr_at_threshold"], 3, percent=True),
                ]
            )
        )
    ceiling = metrics["ceiling"]
    if ceiling.get("available"):
        lines += [
            "",
            "The ceiling is the simulator's own click probability of each impression, slot "
            "included (never available in real data); the context-free ceiling is the best a "
            "model given only the candidate and the customer's true favourite category could "
            "know. As fractions of the ceiling:",
            "",
            f"- model AUC / ceiling AUC: {_ci(ceiling['model_auc_fraction'])}",
            "- share of the achievable log-loss gain (from predicting the base rate to the "
            f"ceiling's log loss) the model realises: {_ci(ceiling['model_log_loss_gain_share'])}",
        ]
        if "context_free_auc_fraction" in ceiling:
            fraction = _ci(ceiling["context_free_auc_fraction"])
            lines.append(f"- context-free ceiling AUC / ceiling AUC: {fraction}")
    lines += _equal_coverage(metrics)
    lines += _slate_section(metrics)
    lines += _catalog_section(metrics)
    lines += _calibration_section(metrics)
    lines += _threshold_section(metrics)
    lines += _segment_section(metrics)
    lines += _importance_section(metrics)
    lines += _story_section(metrics)
    lines += _projection_section(metrics)
    quality = metrics["data_quality"]
    lines += [
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


def _equal_coverage(metrics: Mapping[str, Any]) -> list[str]:
    equal = metrics["equal_coverage"]
    lines = [
        "",
        "## Equal coverage",
        "",
        f"At {metrics['threshold']} the model shows {_pct(equal['coverage'])} of the held-out "
        f"rows ({equal['rows']}). CTR of each ranker's own top {_pct(equal['coverage'])}, so "
        "every ranker shows as many rows (the coverage-CTR plot shows every coverage):",
        "",
        "| ranker | CTR at the model's coverage |",
        "|---|---|",
    ]
    for name, interval in equal["ctr"].items():
        lines.append(_row([name, _ci(interval, 3, percent=True)]))
    return [*lines, ""]


def _slate_section(metrics: Mapping[str, Any]) -> list[str]:
    slate = metrics["slate"]
    if not isinstance(slate, Mapping):
        return [f"## The shown slate (hit rate @{TOP_K})", "", f"Ranking metrics: {slate}.", ""]
    lines = [
        f"## The shown slate (hit rate @{TOP_K} beside its random floor)",
        "",
        f"{slate['page_views']} held-out page views with a click; they showed "
        f"{slate['mean_candidates']:.1f} candidates on average, so even a random order puts a "
        f"clicked one in the top {TOP_K} {_ci(slate['random_floor'])} of the time. Whole-"
        "catalog ranking (next section) is the discriminating test.",
        "",
        f"| ranker | hit rate @{TOP_K} | NDCG @{TOP_K} |",
        "|---|---|---|",
    ]
    for name, m in slate["rankers"].items():
        lines.append(_row([name, _ci(m[f"hit_rate_at_{TOP_K}"]), _ci(m[f"ndcg_at_{TOP_K}"])]))
    lines.append(_row(["random order (expected)", _ci(slate["random_floor"]), ""]))
    return [*lines, ""]


CATALOG_COLUMNS = (
    ("share_at_3", "share of ceiling's expected clicks @3"),
    ("share_at_10", "share @10"),
    ("recall_at_10", "recall@10 of clicked"),
    ("ndcg_at_10", "NDCG@10 of clicked"),
    ("next_recall_at_10", "next click: recall@10"),
    ("next_reciprocal_rank", "next click: MRR"),
)


def _catalog_section(metrics: Mapping[str, Any]) -> list[str]:
    catalog = metrics.get("catalog")
    if not isinstance(catalog, Mapping):
        return ["## Whole-catalog ranking", "", str(catalog), ""]
    rankers = catalog["rankers"]
    columns = [(k, label) for k, label in CATALOG_COLUMNS if k in next(iter(rankers.values()))]
    lines = [
        "## Whole-catalog ranking (every eligible product, per held-out page view)",
        "",
        f"{catalog['page_views']} held-out page views ({catalog['sessions']} sessions), each "
        f"ranking all {catalog['mean_eligible']:.0f} eligible products on average (in stock, not "
        "on screen). share@k: the simulator's expected clicks of the ranker's top k over those "
        "of the simulator's own top k. recall and NDCG @10: the products clicked on that page. "
        "Next click: the product the shopper clicks next (on this page or a later one).",
        "",
        *_catalog_sample_note(catalog),
        _row(["ranker", *(label for _, label in columns)]),
        "|---|" + "---|" * len(columns),
    ]
    for name, m in rankers.items():
        lines.append(_row([name, *(_ci(m[k]) for k, _ in columns)]))
    if "fraction_of_ceiling" in catalog:
        keys = [(k, label) for k, label in columns if not k.startswith("share_at")]
        lines += [
            "",
            "As fractions of the ceiling's own value (paired intervals):",
            "",
            _row(["ranker", *(label for _, label in keys)]),
            "|---|" + "---|" * len(keys),
        ]
        for name, m in catalog["fraction_of_ceiling"].items():
            lines.append(_row([name, *(_ci(m[k]) for k, _ in keys)]))
    else:
        lines += ["", f"share@k needs the simulator's truth: {catalog['simulator']}."]
    return [*lines, ""]


def _catalog_sample_note(catalog: Mapping[str, Any]) -> list[str]:
    """A paragraph saying so when a big catalog ranked only a sample of the held-out pages."""
    held_out = catalog.get("held_out_page_views", catalog["page_views"])
    if catalog["page_views"] >= held_out:
        return []
    return [
        f"A sample of the {held_out} held-out page views: ranking the whole catalog costs one "
        f"feature row per product, so at most {catalog['max_cells']:,} page view x product "
        f"pairs ({catalog['page_views_limit']} page views of whole sessions here) are ranked; "
        "the intervals say what that costs in precision.",
        "",
    ]


def _calibration_section(metrics: Mapping[str, Any]) -> list[str]:
    c = metrics["calibration"]
    floor = c["ece_noise_floor"]
    at = c["at_threshold"]
    lines = [
        "## Calibration",
        "",
        f"ECE {c['ece']:.4f} over {c['bins']} equal-width bins. A perfectly calibrated model "
        f"scored on these rows would still show ECE {floor['median']:.4f} (median; 95th "
        f"percentile {floor['p95']:.4f}) from sampling alone. At the serving threshold: "
        f"{at['rows']} rows score >= {at['threshold']}, predicted {_pct(at['predicted'])} on "
        f"average, clicked {_pct(at['observed'])}.",
        "",
    ]
    platt = c.get("platt")
    if platt:
        after = platt["at_threshold_after"]
        lines += [
            f"Platt step (a = {platt['a']:.4f}, b = {platt['b']:.4f}, fitted on "
            f"{platt['fitted_on']}): held-out ECE after {platt['held_out_ece_after']:.4f}; at "
            f"the threshold {after['rows']} rows, predicted {_pct(after['predicted'])}, "
            f"clicked {_pct(after['observed'])}. "
            + (
                "**Applied**: folded into the trees, so every backend serves the calibrated "
                "probability."
                if c["applied"]
                else "Not applied."
            )
            + f" ({c['reason']})",
            "",
        ]
    else:
        lines += [f"No calibration step fitted ({c.get('reason')}).", ""]
    lines += [
        "| bin | rows | mean predicted | observed |",
        "|---|---|---|---|",
        *(
            f"| {b['low']:.1f}-{b['high']:.1f} | {b['rows']} | {_num(b['predicted'])} "
            f"| {_num(b['observed'])} |"
            for b in c["reliability"]
        ),
        "",
    ]
    return lines


def _threshold_section(metrics: Mapping[str, Any]) -> list[str]:
    rows = [
        _row([r["threshold"], r["shown"], _pct(r["share_shown"]), r["clicks"], _pct(r["ctr"])])
        for r in metrics["threshold_table"]
    ]
    head = _head("threshold", "shown", "share shown", "clicks", "CTR")
    return ["## Confidence thresholds (model)", "", *head, *rows, ""]


def _segment_section(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["## Segments (model)", ""]
    for column, segments in metrics["segments"].items():
        lines += _head(column, "rows", "CTR", "mean score", "AUC [95%]")
        for name, s in segments.items():
            lines.append(
                _row([name, s["rows"], _pct(s["ctr"]), _num(s["mean_score"]), _ci(s["auc"])])
            )
        lines.append("")
    return lines


def _importance_section(metrics: Mapping[str, Any]) -> list[str]:
    rows = [
        _row([r["feature"], f"{r['gain']:.1f}", _pct(r["gain_share"]), r["splits"]])
        for r in metrics["importance"]
    ]
    head = _head("feature", "total gain", "share of gain", "splits")
    return ["## Feature importance", "", *head, *rows, ""]


def _story_section(metrics: Mapping[str, Any]) -> list[str]:
    story = metrics.get("live_session_example")
    if not isinstance(story, Mapping):
        return []
    lines = [
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
    return [*lines, ""]


def _projection_section(metrics: Mapping[str, Any]) -> list[str]:
    projection = metrics["business_projection"]
    title = "## Business illustration (a projection under assumptions, not a measurement)"
    if isinstance(projection, str):
        return [title, "", projection[0].upper() + projection[1:] + ".", ""]
    threshold = metrics["threshold"]
    a = projection["assumptions"]
    lines = [
        title,
        "",
        f"Assumptions (flags): {a['sessions_per_day']:,.0f} sessions/day, "
        f"{a['recs_per_session']:g} recommendations per session, ${a['value_per_click']:.2f} "
        "per click; every recommendation shown clicks at the held-out rate. The confident line "
        f"also assumes enough candidates clear {threshold} to fill every slot (on held-out "
        f"data {_pct(metrics['shown_at_threshold'] / max(metrics['rows']['test'], 1))} of the "
        "candidates shown did). None of this is measured.",
        "",
        f"- Baseline: {projection['baseline_clicks_per_day']:,.0f} clicks/day, "
        f"${projection['baseline_value_per_day']:,.0f}/day.",
    ]
    if "model_value_per_day" in projection:
        lines.append(
            f"- Confident recommendations only (score >= {threshold}): "
            f"{projection['model_clicks_per_day']:,.0f} clicks/day, "
            f"${projection['model_value_per_day']:,.0f}/day "
            f"(+${projection['extra_value_per_day']:,.0f}/day, "
            f"+${projection['extra_value_per_year']:,.0f}/year)."
        )
    lines.append("")
    return lines
