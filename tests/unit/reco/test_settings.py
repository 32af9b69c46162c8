"""Typed flags with RECO_* fallbacks: values parsed once, errors one line naming the source."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from reco.settings import (
    SettingError,
    SettingsParser,
    boolean,
    choice,
    env_name,
    from_settings,
    integer,
    number,
    port,
    shown,
)


def parser() -> SettingsParser:
    p = SettingsParser("prog", "test")
    p.add("--port", port(zero="free"), "50051", "a port")
    p.add("--ratio", number(0, 1), "0.5", "a ratio")
    p.add("--level", choice("INFO", "DEBUG", case_insensitive=True), "INFO", "a level")
    return p


def test_command_line_beats_environment_beats_default() -> None:
    assert parser().parse([], {})["port"] == 50051
    assert parser().parse([], {"RECO_PORT": "7000"})["port"] == 7000
    assert parser().parse(["--port", "8000"], {"RECO_PORT": "7000"})["port"] == 8000


def test_an_environment_value_is_named_by_its_variable_and_flag() -> None:
    with pytest.raises(SettingError, match=r"^RECO_PORT \(--port\) must be a port .*got 'abc'$"):
        parser().parse([], {"RECO_PORT": "abc"})
    with pytest.raises(SettingError, match=r"^--port must be a port from 1 to 65535"):
        parser().parse(["--port", "70000"], {})


@pytest.mark.parametrize("text", ["-0.1", "1.5", "nan", "inf", "x", ""])
def test_numbers_must_be_finite_and_in_range(text: str) -> None:
    with pytest.raises(ValueError, match="finite number from 0 to 1"):
        number(0, 1)(text)


def test_integers_and_ports() -> None:
    assert integer(1, 3)("2") == 2
    with pytest.raises(ValueError, match="integer from 1 to 3"):
        integer(1, 3)("4")
    with pytest.raises(ValueError):
        integer(1)("2.5")
    assert port(disabled="off")("-1") == -1
    with pytest.raises(ValueError, match="-1 \\(off\\)"):
        port(disabled="off")("0")  # 0 is not allowed unless `zero` says what it means
    assert port(zero="free")("0") == 0


def test_choices_are_returned_as_declared() -> None:
    assert parser().parse(["--level", "debug"], {})["level"] == "DEBUG"
    with pytest.raises(SettingError, match="--level must be one of INFO, DEBUG"):
        parser().parse(["--level", "loud"], {})


def test_unknown_flags_are_one_line_errors_not_usage_text() -> None:
    with pytest.raises(SettingError, match="unrecognized arguments: --nope"):
        parser().parse(["--nope"], {})


def test_echoed_values_are_truncated() -> None:
    text = shown("x" * 1000)
    assert len(text) < 100 and "1000 characters" in text
    with pytest.raises(SettingError) as error:
        parser().parse(["--port", "9" * 10_000], {})
    assert len(str(error.value)) < 300


def test_help_names_every_variable_and_default() -> None:
    text = parser().argparser.format_help()
    assert "[RECO_PORT]" in text and "(default: 50051)" in text
    assert env_name("--max-in-flight") == "RECO_MAX_IN_FLIGHT"


def test_a_boolean_flag_is_a_switch_or_takes_a_value() -> None:
    p = SettingsParser("prog", "test")
    p.add("--strict", boolean, "false", "a switch")
    assert p.parse([], {})["strict"] is False
    assert p.parse(["--strict"], {})["strict"] is True
    assert p.parse(["--strict", "no"], {})["strict"] is False
    assert p.parse([], {"RECO_STRICT": "1"})["strict"] is True
    with pytest.raises(SettingError, match=r"^RECO_STRICT \(--strict\) must be true or false"):
        p.parse([], {"RECO_STRICT": "maybe"})


@dataclass(frozen=True)
class _Options:
    rows: int
    seed: int = 7
    out_dir: str = "out"


def test_from_settings_fills_fields_by_name_keeps_defaults_and_takes_overrides() -> None:
    args = SimpleNamespace(rows=10, out="elsewhere", command="generate")
    assert from_settings(_Options, args) == _Options(rows=10)
    assert from_settings(_Options, args, out_dir=args.out) == _Options(10, 7, "elsewhere")
    assert from_settings(_Options, {"rows": 3, "seed": 1}) == _Options(3, 1)


def test_from_settings_fails_when_a_required_field_has_no_setting() -> None:
    with pytest.raises(TypeError, match="rows"):
        from_settings(_Options, SimpleNamespace(seed=1))
