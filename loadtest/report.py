"""Run reports: the Markdown summary (also printed), the JSON result, and where they are written."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loadtest.generator import RunResult
from loadtest.latency import Percentiles
from loadtest.slo import Verdict

RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.md"


def fmt(value: float, digits: int = 3) -> str:
    """A number for a table: `digits` significant figures, "-" for NaN (nothing measured)."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _percentile_row(label: str, p: Percentiles) -> list[str]:
    return [label, fmt(p.p50), fmt(p.p90), fmt(p.p99), fmt(p.p99_9), fmt(p.max), str(p.count)]


PERCENTILE_HEADER = ("latency", "p50", "p90", "p99", "p99.9", "max", "n")


def describe_plan(result: RunResult) -> str:
    """One paragraph: what was sent, to what, for how long."""
    plan, s = result.plan, result.plan.schedule
    rate = f"{s.start_rps:g}/s" if s.start_rps == s.end_rps else f"{s.start_rps:g}->{s.end_rps:g}/s"
    info = result.target_info
    served = (
        f" (model {info.get('version') or '?'}, backend {info.get('backend') or '?'})"
        if info
        else ""
    )
    return (
        f"Target {plan.target}{served}. Scenario {plan.mix}, {plan.candidates} candidates per "
        f"Score. {s.arrival} arrivals at {rate} for {s.duration_s:g} s after a {s.warmup_s:g} s "
        f"warm-up (excluded). {plan.workers} worker process(es) x {plan.channels} channel(s), "
        f"in-flight cap {plan.concurrency}, timeout {plan.timeout_s:g} s, seed {plan.seed}. "
        f"Started {result.started_at}."
    )


def run_markdown(result: RunResult, verdict: Verdict, title: str = "Load test") -> str:
    """The Markdown summary of one run: counts, rates, latency tables, client health, verdict."""
    summary = result.summary
    c = summary.counts
    parts = [
        f"# {title}: {'PASS' if verdict.passed else 'FAIL'}",
        describe_plan(result),
        table(
            ("requests", "scheduled", "sent", "ok", "errors", "dropped", "error rate"),
            [
                [
                    "measured window",
                    str(c.scheduled),
                    str(c.sent),
                    str(c.ok),
                    str(c.errors),
                    str(c.dropped),
                    f"{c.error_rate:.3%}" if math.isfinite(c.error_rate) else "-",
                ]
            ],
        ),
        table(
            ("rate (per s)", "target", "sent", "ok", "predictions"),
            [
                [
                    "achieved vs target",
                    fmt(summary.target_rps),
                    fmt(summary.sent_rps),
                    fmt(summary.ok_rps),
                    fmt(summary.predictions_per_s),
                ]
            ],
        ),
        table(
            PERCENTILE_HEADER,
            [
                _percentile_row("request, client (ms, from intended send)", summary.latency_ms),
                _percentile_row("request, client (ms, from actual send)", summary.service_ms),
                _percentile_row("per prediction, client (us)", summary.per_prediction_us),
                _percentile_row("server_time_us, server (us)", summary.server_time_us),
                _percentile_row("send lag, client (ms)", summary.send_lag_ms),
            ],
        ),
    ]
    if summary.errors_by_status:
        answered = summary.error_latency_ms
        parts.append(
            table(
                ("status", "count", "answered p50 ms", "answered p99 ms"),
                [
                    [
                        name,
                        str(count),
                        fmt(answered[name].p50) if name in answered else "-",
                        fmt(answered[name].p99) if name in answered else "-",
                    ]
                    for name, count in summary.errors_by_status.items()
                ],
            )
        )
    if len(summary.by_kind) > 1:
        parts.append(
            table(
                (
                    "kind",
                    "scheduled",
                    "ok",
                    "p50 ms",
                    "p99 ms",
                    "p99 per prediction us",
                    "server p99 us",
                ),
                [
                    [
                        name,
                        str(k.counts.scheduled),
                        str(k.counts.ok),
                        fmt(k.latency_ms.p50),
                        fmt(k.latency_ms.p99),
                        fmt(k.per_prediction_us.p99),
                        fmt(k.server_time_us.p99),
                    ]
                    for name, k in summary.by_kind.items()
                ],
            )
        )
    cpu = ", ".join(f"worker {i}: {f:.0%}" for i, f in enumerate(result.cpu_per_worker))
    parts.append(f"Client CPU (share of one core while measuring): {cpu}.")
    parts += [f"WARNING: {w}" for w in result.warnings]
    parts.append(verdict.line())
    return "\n\n".join(parts) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Writes a JSON document (NaN as null), creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(document), indent=2) + "\n")
    return path


def run_document(result: RunResult, verdict: Verdict) -> dict[str, Any]:
    """The JSON result of one run."""
    return {**result.as_dict(), "verdict": verdict.as_dict()}


def write_run(result: RunResult, verdict: Verdict, out_dir: Path) -> str:
    """Writes result.json and summary.md into out_dir; returns the Markdown."""
    markdown = run_markdown(result, verdict)
    write_json(out_dir / RESULT_FILE, run_document(result, verdict))
    (out_dir / SUMMARY_FILE).write_text(markdown)
    return markdown
