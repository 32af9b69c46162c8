"""The three things `python -m loadtest` does: one run, a capacity search, a comparison."""

from __future__ import annotations

import logging
import math
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

import reco.settings as flags
from loadtest import latency, plots, report
from loadtest.capacity import CapacityResult, StepOutcome, search_capacity
from loadtest.cli import Settings
from loadtest.compare import Contender, comparison_rows
from loadtest.generator import RunResult, run_load
from loadtest.plan import LoadPlan
from loadtest.probe import model_info, wait_for_serving
from loadtest.products import load_product_ids
from loadtest.schedule import RateSchedule
from loadtest.server_process import ManagedServer
from loadtest.slo import SloConfig, Verdict, evaluate

logger = logging.getLogger(__name__)

CAPACITY_RESULT_FILE = "capacity.json"
CAPACITY_SUMMARY_FILE = "capacity.md"
COMPARE_RESULT_FILE = "compare.json"
COMPARE_SUMMARY_FILE = "compare.md"
COMPARE_HISTOGRAM_FILE = "compare_histogram.png"


def execute(settings: Settings) -> int:
    """Runs what the settings ask for; returns the exit code (0 PASS, 1 FAIL)."""
    products = load_product_ids(settings.catalog, required=settings.catalog_required)
    plan = flags.from_settings(LoadPlan, settings, products=products, run_id=uuid.uuid4().hex[:8])
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    if settings.mode == "compare":
        return compare_command(settings, plan)
    if settings.mode == "capacity":
        return capacity_command(settings, plan)
    return run_command(settings, plan)


@contextmanager
def serving_target(settings: Settings, backend: str | None = None) -> Iterator[str]:
    """The address to load: a server started for the run (stopped after), or --target."""
    if settings.start_server or backend is not None:
        spec = replace(settings.server, backend=backend or settings.server.backend)
        log = settings.results_dir / f"server-{spec.backend}.log"
        with ManagedServer(spec, log) as server:
            yield server.target
    else:
        wait_for_serving(settings.target, settings.ready_timeout_s)
        yield settings.target


def _run(settings: Settings, plan: LoadPlan) -> tuple[RunResult, Verdict]:
    result = run_load(
        plan,
        limits=settings.limits,
        progress=sys.stderr if settings.progress else None,
        target_info=model_info,
    )
    return result, evaluate(result.summary, settings.slo)


def run_command(settings: Settings, plan: LoadPlan) -> int:
    """One run: report, plots, verdict line; exit code from the verdict."""
    with serving_target(settings) as target:
        result, verdict = _run(settings, plan.with_target(target))
    markdown = report.write_run(result, verdict, settings.results_dir)
    schedule = plan.schedule
    plots.run_plots(
        result.samples, result.series, schedule.warmup_s, schedule.total_s, settings.results_dir
    )
    print(markdown)
    print(f"results: {settings.results_dir}")
    return verdict.exit_code


# ------------------------------------------------------------------------------------------
# Capacity search

STEP_HEADER = (
    "rate/s",
    "ok/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "p99 per prediction us",
    "server p99 us",
    "error rate",
    "client cpu",
    "verdict",
)


def step_row(rate: float, result: RunResult, verdict: Verdict) -> list[str]:
    """One capacity step as a table row."""
    s = result.summary
    mark = "PASS" if verdict.passed else "FAIL"
    if result.saturated:
        mark += " (client saturated)"
    return [
        f"{rate:g}",
        report.fmt(s.ok_rps),
        report.fmt(s.latency_ms.p50),
        report.fmt(s.latency_ms.p99),
        report.fmt(s.latency_ms.p99_9),
        report.fmt(s.per_prediction_us.p99),
        report.fmt(s.server_time_us.p99),
        f"{s.counts.error_rate:.2%}" if math.isfinite(s.counts.error_rate) else "-",
        f"{max(result.cpu_per_worker, default=float('nan')):.0%}",
        mark,
    ]


Step = StepOutcome[tuple[RunResult, Verdict]]


def capacity_command(settings: Settings, plan: LoadPlan) -> int:
    """Steps the rate until the SLO breaks; exit 0 when some rate held, else 1."""
    assert settings.capacity is not None
    schedule = settings.schedule

    with serving_target(settings) as target:
        base = plan.with_target(target)
        print(report.table(STEP_HEADER, []), flush=True)

        def run_step(rate: float) -> Step:
            step_schedule = RateSchedule.constant(
                rate, schedule.duration_s, schedule.warmup_s, schedule.arrival
            )
            result, verdict = _run(settings, base.with_schedule(step_schedule))
            # Rows as they come, under the header printed once before the first step.
            print(report.table(STEP_HEADER, [step_row(rate, result, verdict)]).split("\n")[-1])
            for warning in result.warnings:
                print(f"WARNING: {warning}", flush=True)
            return StepOutcome(rate, verdict.passed, result.saturated, (result, verdict))

        outcome = search_capacity(run_step, settings.capacity)
    markdown = capacity_markdown(outcome, base, settings.slo)
    report.write_json(settings.results_dir / CAPACITY_RESULT_FILE, capacity_document(outcome, base))
    (settings.results_dir / CAPACITY_SUMMARY_FILE).write_text(markdown)
    steps = outcome.steps
    plots.capacity_curve(
        [s.rate_rps for s in steps],
        [s.detail[0].summary.latency_ms.p50 for s in steps],
        [s.detail[0].summary.latency_ms.p99 for s in steps],
        [s.passed for s in steps],
        settings.results_dir / plots.CAPACITY_FILE,
        f"Capacity search: {base.mix}, {base.candidates} candidates",
    )
    print(markdown)
    print(f"results: {settings.results_dir}")
    return 0 if outcome.best_rps is not None else 1


def capacity_markdown(
    outcome: CapacityResult[tuple[RunResult, Verdict]], plan: LoadPlan, slo: SloConfig
) -> str:
    """The capacity result: the highest rate that held and every step's figures."""
    best = outcome.best_rps
    headline = (
        f"highest rate that held: {best:g} requests/s"
        if best is not None
        else "no rate held (lower --capacity-start)"
    )
    if best is not None and outcome.stop_reason != "slo breached":
        headline += f" (a lower bound: {outcome.stop_reason})"
    parts = [
        f"# Capacity search: {headline}",
        f"Target {plan.target}. Scenario {plan.mix}, {plan.candidates} candidates per Score; "
        f"each step {plan.schedule.duration_s:g} s after a {plan.schedule.warmup_s:g} s "
        f"warm-up; {plan.workers} worker(s); stopped: {outcome.stop_reason}"
        + (
            f" (first breach at {outcome.first_breach_rps:g}/s)."
            if outcome.first_breach_rps is not None
            else "."
        ),
        report.table(
            STEP_HEADER, [step_row(s.rate_rps, s.detail[0], s.detail[1]) for s in outcome.steps]
        ),
    ]
    parts.append(f"SLO of every step: {slo.describe()}.")
    for step in outcome.steps:
        if not step.passed:
            parts.append(f"{step.rate_rps:g}/s: {step.detail[1].line()}")
    return "\n\n".join(parts) + "\n"


def capacity_document(
    outcome: CapacityResult[tuple[RunResult, Verdict]], plan: LoadPlan
) -> dict[str, Any]:
    """The JSON result of a capacity search."""
    return {
        "plan": plan.describe(),
        "best_rps": outcome.best_rps,
        "first_breach_rps": outcome.first_breach_rps,
        "stop_reason": outcome.stop_reason,
        "steps": [
            {
                "rate_rps": s.rate_rps,
                "passed": s.passed,
                "saturated": s.saturated,
                "summary": s.detail[0].summary.as_dict(),
                "verdict": s.detail[1].as_dict(),
                "client_cpu_per_worker": s.detail[0].cpu_per_worker,
                "warnings": s.detail[0].warnings,
            }
            for s in outcome.steps
        ],
    }


# ------------------------------------------------------------------------------------------
# Comparison


def compare_command(settings: Settings, plan: LoadPlan) -> int:
    """The same scenario against every contender, alternating for --rounds; prints ratios."""
    runs: dict[str, list[tuple[RunResult, Verdict]]] = {}
    with ExitStack() as stack:
        contenders = list(settings.compare_targets)
        for backend in settings.compare_backends:
            target = stack.enter_context(serving_target(settings, backend=backend))
            contenders.append(Contender(backend, target))
        if settings.compare_targets:
            for contender in contenders:
                wait_for_serving(contender.target, settings.ready_timeout_s)
        for round_index in range(settings.rounds):
            for contender in contenders:
                logger.info(
                    "round %s/%s: %s (%s)",
                    round_index + 1,
                    settings.rounds,
                    contender.label,
                    contender.target,
                )
                runs.setdefault(contender.label, []).append(
                    _run(settings, plan.with_target(contender.target))
                )
    warnings = backend_mismatches(settings.compare_backends, runs)
    markdown = compare_markdown(runs, plan, settings.rounds, warnings)
    report.write_json(
        settings.results_dir / COMPARE_RESULT_FILE, compare_document(runs, plan, warnings)
    )
    (settings.results_dir / COMPARE_SUMMARY_FILE).write_text(markdown)
    plots.latency_histogram(
        {label: _ok_latencies_ms(pairs) for label, pairs in runs.items()},
        settings.results_dir / COMPARE_HISTOGRAM_FILE,
        "Request latency by contender (measured windows, all rounds)",
    )
    print(markdown)
    print(f"results: {settings.results_dir}")
    passed = all(v.passed for pairs in runs.values() for _, v in pairs)
    return 0 if passed else 1


def _ok_latencies_ms(pairs: list[tuple[RunResult, Verdict]]) -> np.ndarray:
    parts = []
    for result, _ in pairs:
        measured = latency.measured_window(result.samples, result.plan.schedule.warmup_s)
        parts.append(measured.latency_s[measured.status == latency.OK] * 1e3)
    return np.concatenate(parts) if parts else np.zeros(0)


def backend_mismatches(
    backends: tuple[str, ...], runs: dict[str, list[tuple[RunResult, Verdict]]]
) -> list[str]:
    """Warnings where a server started for backend X says it serves something else."""
    warnings = []
    for backend in backends:
        for result, _ in runs.get(backend, []):
            served = result.target_info.get("backend", "")
            if served and backend not in served:
                warnings.append(f"asked for backend {backend!r}, the server reports {served!r}")
                break
    return warnings


def compare_markdown(
    runs: dict[str, list[tuple[RunResult, Verdict]]],
    plan: LoadPlan,
    rounds: int,
    warnings: list[str],
) -> str:
    """Medians per contender and ratios against the first, then each contender's verdicts."""
    labels = list(runs)
    baseline = labels[0]
    rows = comparison_rows({label: [r.summary for r, _ in pairs] for label, pairs in runs.items()})
    header = ["metric", *labels, *(f"{label} / {baseline}" for label in labels[1:])]
    body = [
        [
            f"{row.name} ({row.unit})" if row.unit else row.name,
            *(report.fmt(row.medians[label]) for label in labels),
            *(
                f"{row.ratios[label]:.2f}x" if math.isfinite(row.ratios[label]) else "-"
                for label in labels[1:]
            ),
        ]
        for row in rows
    ]
    parts = [
        f"# Comparison: {' vs '.join(labels)}",
        f"Scenario {plan.mix}, {plan.candidates} candidates per Score, "
        f"{plan.schedule.start_rps:g}->{plan.schedule.end_rps:g} requests/s for "
        f"{plan.schedule.duration_s:g} s (+{plan.schedule.warmup_s:g} s warm-up) per run; "
        f"{rounds} round(s), contenders alternating; medians over rounds. Ratios are "
        f"contender / {baseline} (for latencies, above 1 = slower).",
        report.table(header, body),
    ]
    for label, pairs in runs.items():
        target = pairs[0][0].plan.target
        info = pairs[0][0].target_info
        served = f", backend {info['backend']}" if info.get("backend") else ""
        passed = sum(v.passed for _, v in pairs)
        word = "PASS" if passed == len(pairs) else "FAIL"
        parts.append(
            f"{label} ({target}{served}): SLO {word} in {passed}/{len(pairs)} round(s)"
            + "".join(
                f"; round {i}: {v.line()}" for i, (_, v) in enumerate(pairs, 1) if not v.passed
            )
        )
        for result, _ in pairs:
            parts += [f"WARNING ({label}): {w}" for w in result.warnings]
    parts += [f"WARNING: {w}" for w in warnings]
    return "\n\n".join(parts) + "\n"


def compare_document(
    runs: dict[str, list[tuple[RunResult, Verdict]]], plan: LoadPlan, warnings: list[str]
) -> dict[str, Any]:
    """The JSON result of a comparison."""
    rows = comparison_rows({label: [r.summary for r, _ in pairs] for label, pairs in runs.items()})
    return {
        "plan": plan.describe(),
        "baseline": next(iter(runs)),
        "metrics": [
            {
                "name": row.name,
                "unit": row.unit,
                "lower_is_better": row.lower_is_better,
                "medians": row.medians,
                "ratios": row.ratios,
            }
            for row in rows
        ],
        "runs": {
            label: [
                {
                    "target": result.plan.target,
                    "target_info": result.target_info,
                    "summary": result.summary.as_dict(),
                    "verdict": verdict.as_dict(),
                    "client_cpu_per_worker": result.cpu_per_worker,
                    "warnings": result.warnings,
                }
                for result, verdict in pairs
            ]
            for label, pairs in runs.items()
        },
        "warnings": warnings,
    }
