"""End to end: `python -m loadtest` and locust against the real scoring server on a free port.

The server serves the session's default bundle (tests/integration/conftest.py); it is started
and awaited exactly as `--start-server` does. No test asserts a timing: only structure, counts
and status codes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.probe import TargetNotReadyError, wait_for_serving
from loadtest.server_process import (
    DEFAULT_SERVER_COMMAND,
    SERVER_COMMAND_ENV,
    ManagedServer,
    ServerSpec,
)

ROOT = Path(__file__).resolve().parents[2]
SERVER_COMMAND = DEFAULT_SERVER_COMMAND
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    """One server for the module, started and awaited exactly as --start-server does."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ManagedServer(ServerSpec(bundle=bundle, command=SERVER_COMMAND), log) as running:
        yield running


def run_loadtest(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs `python -m loadtest` with the test's server command; never inherits user settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECO_LOADTEST_")}
    env[SERVER_COMMAND_ENV] = SERVER_COMMAND
    return subprocess.run(
        [sys.executable, "-m", "loadtest", "--no-progress", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def read_json(path: Path) -> Any:
    text = path.read_text()
    assert "NaN" not in text, "result files must be strict JSON"
    return json.loads(text)


def test_run_reports_structure_and_counts_rejected_requests_by_status(
    server: ManagedServer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = run_loadtest(
        "--target",
        server.target,
        "--rate",
        "80",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--scenario",
        "score=3,score-bad=1,recommend-session=1,track=1",
        "--candidates",
        "20",
        "--timeout",
        "10",
        "--results-dir",
        str(out),
    )
    # Every score-bad request is rejected, so the error-rate SLO must fail whatever the timing.
    assert done.returncode == 1, done.stderr
    assert "SLO FAIL" in done.stdout

    result = read_json(out / "result.json")
    assert set(result) >= {"plan", "summary", "client", "time_series", "verdict", "target_info"}
    summary = result["summary"]
    assert set(summary) >= {
        "requests",
        "errors_by_status",
        "rate",
        "latency_ms",
        "service_ms",
        "per_prediction_us",
        "server_time_us",
        "send_lag_ms",
        "by_kind",
    }
    for figure in ("latency_ms", "per_prediction_us", "server_time_us"):
        assert set(summary[figure]) >= {"p50", "p90", "p99", "p99.9", "max", "count"}
    requests = summary["requests"]
    assert requests["scheduled"] == 160  # 80/s for 2 s, warm-up excluded
    assert requests["ok"] + requests["errors"] + requests["dropped"] == requests["scheduled"]

    bad = summary["by_kind"]["score-bad"]
    assert bad["ok"] == 0
    rejected = bad["errors_by_status"].get("INVALID_ARGUMENT", 0)
    assert rejected > 0
    assert summary["errors_by_status"]["INVALID_ARGUMENT"] == rejected
    for kind in ("score", "recommend-session", "track"):
        assert summary["by_kind"][kind]["ok"] > 0
        assert "INVALID_ARGUMENT" not in summary["by_kind"][kind]["errors_by_status"]
    assert summary["server_time_us"]["count"] > 0
    assert result["client"]["session_setup_errors"] == {}
    assert len(result["client"]["cpu_per_worker"]) == 1

    checks = {c["name"]: c for c in result["verdict"]["checks"]}
    assert checks["error rate"]["passed"] is False

    markdown = (out / "summary.md").read_text()
    assert markdown.startswith("# Load test: FAIL")
    assert "| INVALID_ARGUMENT |" in markdown
    assert "server_time_us, server (us)" in markdown
    for png in ("latency_over_time.png", "latency_histogram.png"):
        assert (out / png).read_bytes().startswith(PNG_SIGNATURE)


def test_start_server_runs_one_command_and_stops_the_server(tmp_path: Path, bundle: Path) -> None:
    out = tmp_path / "one-command"
    done = run_loadtest(
        "--start-server",
        "--bundle",
        str(bundle),
        "--backend",
        "onnx",
        "--rate",
        "50",
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--workers",
        "2",
        "--timeout",
        "10",
        "--results-dir",
        str(out),
    )
    assert done.returncode in (0, 1), done.stderr  # PASS or FAIL depends on the machine
    verdict_lines = [line for line in done.stdout.splitlines() if line.startswith("SLO ")]
    assert len(verdict_lines) == 1
    assert verdict_lines[0].startswith(("SLO PASS", "SLO FAIL"))
    result = read_json(out / "result.json")
    assert result["summary"]["requests"]["scheduled"] == 75
    assert result["summary"]["errors_by_status"] == {}
    assert len(result["client"]["cpu_per_worker"]) == 2
    assert result["target_info"]["backend"].endswith("onnx")
    assert (out / "server-onnx.log").stat().st_size > 0
    # The server it started is gone.
    with pytest.raises(TargetNotReadyError):
        wait_for_serving(result["plan"]["target"], timeout_s=1.0)


def test_concurrency_cap_drops_instead_of_delaying(server: ManagedServer, tmp_path: Path) -> None:
    # One request in flight at most, 1000 candidates each, due every 0.5 ms: a request cannot
    # finish before the next is due, so requests must be dropped rather than sent late.
    done = run_loadtest(
        "--target",
        server.target,
        "--rate",
        "2000",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "1",
        "--candidates",
        "1000",
        "--timeout",
        "10",
        "--results-dir",
        str(tmp_path / "out"),
    )
    assert done.returncode == 1, done.stderr
    requests = read_json(tmp_path / "out" / "result.json")["summary"]["requests"]
    assert requests["scheduled"] == 2000
    assert requests["dropped"] >= 500
    assert requests["sent"] + requests["dropped"] == 2000
    assert "dropped by the concurrency cap" in done.stdout


def test_capacity_search_reports_every_step(server: ManagedServer, tmp_path: Path) -> None:
    out = tmp_path / "capacity"
    done = run_loadtest(
        "--target",
        server.target,
        "--capacity",
        "--capacity-start",
        "40",
        "--capacity-step",
        "40",
        "--capacity-max",
        "80",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--candidates",
        "10",
        "--timeout",
        "10",
        # Latency bounds off: the steps can only fail on errors, so the outcome is fixed.
        "--slo-p99-per-prediction-ms",
        "off",
        "--slo-p99-request-ms",
        "off",
        "--results-dir",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    result = read_json(out / "capacity.json")
    assert [step["rate_rps"] for step in result["steps"]] == [40, 80]
    assert result["best_rps"] == 80
    assert result["stop_reason"] == "max rate reached"
    for step in result["steps"]:
        assert set(step) >= {"summary", "verdict", "passed", "saturated"}
    assert "highest rate that held: 80 requests/s" in (out / "capacity.md").read_text()
    assert (out / "capacity.png").read_bytes().startswith(PNG_SIGNATURE)


def test_compare_backends_prints_ratios(tmp_path: Path, bundle: Path) -> None:
    out = tmp_path / "compare"
    done = run_loadtest(
        "--compare-backends",
        "compiled,lightgbm",
        "--bundle",
        str(bundle),
        "--rounds",
        "2",
        "--rate",
        "40",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--timeout",
        "10",
        "--results-dir",
        str(out),
    )
    assert done.returncode in (0, 1), done.stderr
    result = read_json(out / "compare.json")
    assert result["baseline"] == "compiled"
    assert set(result["runs"]) == {"compiled", "lightgbm"}
    assert all(len(runs) == 2 for runs in result["runs"].values())
    p50 = next(m for m in result["metrics"] if m["name"] == "request p50")
    assert p50["ratios"]["compiled"] == pytest.approx(1.0)
    assert p50["ratios"]["lightgbm"] > 0
    assert result["warnings"] == []  # each server reports the backend it was started with
    markdown = (out / "compare.md").read_text()
    assert "| lightgbm / compiled |" in markdown
    assert (out / "compare_histogram.png").read_bytes().startswith(PNG_SIGNATURE)


def test_unreachable_target_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    done = run_loadtest(
        "--target", "127.0.0.1:9", "--ready-timeout", "1", "--results-dir", str(tmp_path)
    )
    assert done.returncode == 2
    assert "127.0.0.1:9 did not report reco.v1.Recommender SERVING" in done.stderr


def test_locust_runs_headless_and_reports_every_rpc(server: ManagedServer, tmp_path: Path) -> None:
    prefix = tmp_path / "locust"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "3s",
            "--host",
            server.target,
            "--think-time",
            "0.05:0.2",
            "--candidates",
            "20",
            "--only-summary",
            "--csv",
            str(prefix),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with Path(f"{prefix}_stats.csv").open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    for rpc in ("Score", "TrackEvent", "Recommend"):
        assert int(rows[rpc]["Request Count"]) > 0, rpc
        assert int(rows[rpc]["Failure Count"]) == 0, rpc
        assert rows[rpc]["Type"] == "grpc"
