"""Reports from a synthetic run: Markdown tables, JSON without NaN, PNG plots, client warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtest import latency, plots, report
from loadtest.generator import RunResult, Saturation, client_warnings
from loadtest.latency import DROPPED, OK, Samples
from loadtest.plan import LoadPlan
from loadtest.products import default_product_ids
from loadtest.schedule import RateSchedule, intended_times
from loadtest.slo import SloConfig, evaluate
from loadtest.workload import KINDS, Mix

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_run(cpu: float = 0.3) -> RunResult:
    plan = LoadPlan(
        target="127.0.0.1:1",
        schedule=RateSchedule.constant(100.0, duration_s=2.0, warmup_s=0.5),
        mix=Mix.parse("score=3,score-bad=1"),
        candidates=50,
        concurrency=8,
        workers=1,
        channels=1,
        timeout_s=1.0,
        seed=0,
        products=default_product_ids(),
        run_id="test",
    )
    times = intended_times(plan.schedule)
    rng = np.random.default_rng(0)
    samples = Samples.allocate(times, plan.mix.draw(rng, len(times)))
    samples.sent_s[:] = times + 0.0002
    samples.done_s[:] = samples.sent_s + rng.lognormal(np.log(0.002), 0.3, len(times))
    samples.status[:] = np.where(samples.kind == KINDS.index("score-bad"), 3, OK)
    samples.status[-3:] = DROPPED
    samples.sent_s[-3:] = samples.done_s[-3:] = np.nan
    samples.predictions[:] = plan.candidates
    samples.server_us[:] = rng.uniform(80, 200, len(times))
    measured = latency.measured_window(samples, plan.schedule.warmup_s)
    summary = latency.summarize(measured, plan.schedule.duration_s, KINDS)
    warnings, saturated = client_warnings(summary, [cpu], {}, Saturation())
    return RunResult(
        plan=plan,
        started_at="2026-11-22T00:00:00+00:00",
        samples=samples,
        summary=summary,
        series=latency.time_series(samples),
        cpu_per_worker=[cpu],
        setup_errors={},
        warnings=warnings,
        saturated=saturated,
        target_info={"version": "v1", "backend": "compiled"},
    )


def test_markdown_has_the_tables_and_the_verdict() -> None:
    result = synthetic_run()
    verdict = evaluate(result.summary, SloConfig())
    markdown = report.run_markdown(result, verdict)
    assert markdown.startswith("# Load test: FAIL")
    assert "backend compiled" in markdown
    for needle in (
        "| measured window | 200 |",
        "request, client (ms, from intended send)",
        "per prediction, client (us)",
        "server_time_us, server (us)",
        "| INVALID_ARGUMENT |",
        "| DROPPED | 3 |",
        "| score-bad |",
        "worker 0: 30%",
        "3 requests dropped by the concurrency cap",
        verdict.line(),
    ):
        assert needle in markdown


def test_json_result_is_strict_json_with_nulls_for_nothing_measured(tmp_path: Path) -> None:
    result = synthetic_run()
    report.write_run(result, evaluate(result.summary, SloConfig()), tmp_path)
    text = (tmp_path / report.RESULT_FILE).read_text()
    assert "NaN" not in text
    document = json.loads(text)
    assert set(document) == {
        "started_at",
        "plan",
        "target_info",
        "summary",
        "client",
        "time_series",
        "verdict",
    }
    bad = document["summary"]["by_kind"]["score-bad"]
    assert bad["latency_ms"]["p99"] is None
    assert bad["errors_by_status"]["INVALID_ARGUMENT"] == bad["scheduled"] - bad["ok"] - (
        bad["errors_by_status"].get("DROPPED", 0)
    )
    assert (tmp_path / report.SUMMARY_FILE).read_text().startswith("# Load test")


def test_plots_are_png_files(tmp_path: Path) -> None:
    result = synthetic_run()
    paths = plots.run_plots(result.samples, result.series, 0.5, 2.5, tmp_path)
    assert [p.name for p in paths] == [plots.LATENCY_OVER_TIME_FILE, plots.HISTOGRAM_FILE]
    for path in paths:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    curve = plots.capacity_curve(
        [100, 200], [1.0, 2.0], [3.0, 9.0], [True, False], tmp_path / "c.png", "t"
    )
    assert curve.read_bytes().startswith(PNG_SIGNATURE)


def test_a_busy_client_is_flagged_as_saturated() -> None:
    result = synthetic_run(cpu=0.95)
    assert result.saturated
    assert any("95% of a core" in w for w in result.warnings)


def test_a_late_client_is_flagged_as_behind_schedule() -> None:
    summary = synthetic_run().summary  # every request left 0.2 ms late
    warnings, saturated = client_warnings(summary, [0.1], {}, Saturation(max_send_lag_ms=0.1))
    assert saturated
    assert any("fell behind schedule" in w for w in warnings)
    warnings, saturated = client_warnings(summary, [0.1], {}, Saturation(max_send_lag_ms=1.0))
    assert not saturated
    assert not any("late" in w for w in warnings)


def test_a_late_tail_only_warns() -> None:
    result = synthetic_run()
    result.samples.sent_s[-20:-3] += 0.050  # a 50 ms stall near the end
    measured = latency.measured_window(result.samples, 0.5)
    summary = latency.summarize(measured, 2.0, KINDS)
    warnings, saturated = client_warnings(summary, [0.1], {}, Saturation())
    assert not saturated
    assert any("some requests left late" in w for w in warnings)


@pytest.mark.parametrize(
    ("value", "text"), [(float("nan"), "-"), (0.01234, "0.0123"), (12345, "12,345")]
)
def test_number_format(value: float, text: str) -> None:
    assert report.fmt(value) == text
