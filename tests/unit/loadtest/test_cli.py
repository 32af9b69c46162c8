"""Command-line settings: defaults, environment fallbacks and clear errors for bad flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.cli import parse_settings
from loadtest.server_process import SERVER_COMMAND_ENV, ServerSpec
from reco.settings import SettingError


def test_defaults_describe_a_short_score_run() -> None:
    settings, verbose = parse_settings([])
    assert settings.mode == "run"
    assert settings.target == "127.0.0.1:50051"
    assert settings.schedule.start_rps == settings.schedule.end_rps == 200
    assert settings.schedule.duration_s == 20
    assert settings.candidates == 100
    assert str(settings.mix) == "score=1"
    assert settings.catalog == Path("artifacts/latest/catalog.csv")
    assert not settings.catalog_required
    assert settings.slo.p99_per_prediction_ms == 1.0
    assert not verbose


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECO_LOADTEST_TARGET", "10.1.1.1:7000")
    monkeypatch.setenv("RECO_LOADTEST_RATE", "750")
    monkeypatch.setenv(SERVER_COMMAND_ENV, "my-server --flag")
    settings, _ = parse_settings([])
    assert settings.target == "10.1.1.1:7000"
    assert settings.schedule.start_rps == 750
    assert settings.server.command == "my-server --flag"
    # A flag beats the environment.
    assert parse_settings(["--rate", "10"])[0].schedule.start_rps == 10


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECO_LOADTEST_RATE", "fast")
    with pytest.raises(
        SettingError, match=r"RECO_LOADTEST_RATE \(--rate\) must be a finite number > 0, got 'fast'"
    ):
        parse_settings([])


def test_ramp_capacity_and_compare_modes() -> None:
    ramp, _ = parse_settings(["--ramp", "100:900", "--duration", "30"])
    assert (ramp.schedule.start_rps, ramp.schedule.end_rps) == (100, 900)
    capacity, _ = parse_settings(["--capacity", "--capacity-start", "50"])
    assert capacity.mode == "capacity"
    assert capacity.capacity is not None
    assert capacity.capacity.start_rps == 50
    compare, _ = parse_settings(["--compare", "a=h:1", "b=h:2"])
    assert compare.mode == "compare"
    assert [c.label for c in compare.compare_targets] == ["a", "b"]
    backends, _ = parse_settings(["--compare-backends", "compiled,onnx,lightgbm"])
    assert backends.compare_backends == ("compiled", "onnx", "lightgbm")
    off, _ = parse_settings(["--slo-p99-request-ms", "off"])
    assert off.slo.p99_request_ms is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ramp", "100"], "FROM:TO"),
        (["--ramp", "1:2", "--capacity"], "cannot be combined"),
        (["--compare-backends", "compiled,gpu"], "--compare-backends needs"),
        (["--compare", "h:1"], "at least two targets"),
        (["--compare", "a=h:1", "a=h:2"], "labels must be distinct"),
        (["--scenario", "score=x"], "weight of 'score'"),
        (["--rate", "0"], "--rate must be a finite number > 0, got '0'"),
        (["--capacity", "--capacity-max", "10"], "capacity max"),
        (["--rounds", "0"], "--rounds"),
    ],
)
def test_bad_flags_exit_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingError, match=re.escape(message)):
        parse_settings(argv)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m loadtest: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_server_command_gets_the_standard_flags_appended() -> None:
    spec = ServerSpec(bundle=Path("b"), backend="onnx", command="python -m server --workers 2")
    assert spec.argv(5000, 5001) == [
        "python",
        "-m",
        "server",
        "--workers",
        "2",
        "--bundle",
        "b",
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
        "--metrics-port",
        "5001",
        "--backend",
        "onnx",
    ]
