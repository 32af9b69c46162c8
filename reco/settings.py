"""Typed CLI flags with RECO_* environment fallbacks: a bad value is one line naming its source."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

ENV_PREFIX = "RECO_"
# Values echoed in error messages are cut to this many characters.
SHOWN_CHARS = 64

Parse = Callable[[str], Any]


class SettingError(Exception):
    """A setting is invalid or unusable; the message is one line naming the flag (and the
    environment variable when the value came from there)."""


def shown(value: str) -> str:
    """A value quoted for an error message, truncated to SHOWN_CHARS characters."""
    if len(value) > SHOWN_CHARS:
        return repr(value[:SHOWN_CHARS]) + f"... ({len(value)} characters)"
    return repr(value)


def integer(minimum: int | None = None, maximum: int | None = None) -> Parse:
    """An integer within [minimum, maximum] (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"must be an integer{_range(minimum, maximum)}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"must be an integer{_range(minimum, maximum)}")
        return value

    return parse


def number(minimum: float | None = None, maximum: float | None = None, *,
           positive: bool = False) -> Parse:  # fmt: skip
    """A finite number within [minimum, maximum]; positive=True also excludes 0."""

    def parse(text: str) -> float:
        requirement = "must be a finite number" + (" > 0" if positive else "")
        requirement += _range(minimum, maximum)
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(requirement) from None
        if not math.isfinite(value) or (positive and value <= 0):
            raise ValueError(requirement)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(requirement)
        return value

    return parse


def port(*, zero: str = "", disabled: str = "") -> Parse:
    """A TCP port 1-65535; `zero` / `disabled` describe what 0 / -1 mean where they are allowed."""
    lowest = -1 if disabled else (0 if zero else 1)
    words = ["a port from 1 to 65535"]
    if zero:
        words.append(f"0 ({zero})")
    if disabled:
        words.append(f"-1 ({disabled})")
    requirement = "must be " + ", or ".join(words)

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(requirement) from None
        if not lowest <= value <= 65535 or (value == 0 and not zero):
            raise ValueError(requirement)
        return value

    return parse


def choice(*options: str, case_insensitive: bool = False) -> Parse:
    """One of `options` (returned as written there)."""

    def parse(text: str) -> str:
        for option in options:
            if text == option or (case_insensitive and text.lower() == option.lower()):
                return option
        raise ValueError(f"must be one of {', '.join(options)}")

    return parse


def boolean(text: str) -> bool:
    """true/false (also 1/0, yes/no, on/off; case-insensitive)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def optional_path(text: str) -> Path | None:
    """A path, or None for an empty value."""
    return Path(text) if text else None


def required_path(text: str) -> Path:
    """A non-empty path."""
    if not text:
        raise ValueError("must not be empty")
    return Path(text)


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {_number(minimum)} to {_number(maximum)}"
    if minimum is not None:
        return f" >= {_number(minimum)}"
    if maximum is not None:
        return f" <= {_number(maximum)}"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _OneLineParser(argparse.ArgumentParser):
    """argparse that raises SettingError instead of printing its usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise SettingError(message)


class SettingsParser:
    """Flags declared once each (parser, default, help); every flag falls back to RECO_<FLAG>,
    then to its documented default. parse() returns {dest: typed value} or raises SettingError.
    """

    def __init__(self, prog: str, description: str) -> None:
        self.argparser = _OneLineParser(prog=prog, description=description)
        self._flags: dict[str, tuple[str, Parse, str]] = {}  # dest -> (flag, parse, default)
        self._sources: dict[str, str] = {}

    def add(self, flag: str, parse: Parse, default: str, help: str, metavar: str = "") -> None:
        """Declares `--flag` (typed by `parse`, which raises ValueError naming the requirement)."""
        dest = flag.removeprefix("--").replace("-", "_")
        env = env_name(flag)
        shown_default = default if default else "unset"
        # A boolean flag works as a switch (`--flag`) and with a value (`--flag false`).
        switch: dict[str, Any] = {"nargs": "?", "const": "true"} if parse is boolean else {}
        self.argparser.add_argument(
            flag,
            dest=dest,
            default=argparse.SUPPRESS,
            metavar=metavar or dest.upper(),
            help=f"{help} (default: {shown_default}) [{env}]".replace("%", "%%"),
            **switch,
        )
        self._flags[dest] = (flag, parse, default)

    def parse(
        self, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Typed values of every flag: the command line, else the environment, else the default."""
        environ = os.environ if environ is None else environ
        given = vars(self.argparser.parse_args(argv))
        values: dict[str, Any] = {}
        for dest, (flag, parse, default) in self._flags.items():
            env = env_name(flag)
            if dest in given:
                text, source = given[dest], flag
            elif env in environ:
                text, source = environ[env], f"{env} ({flag})"
            else:
                text, source = default, flag
            self._sources[dest] = source
            try:
                values[dest] = parse(text)
            except ValueError as exc:
                raise SettingError(f"{source} {exc}, got {shown(text)}") from None
        return values

    def source(self, dest: str) -> str:
        """Where a parsed value came from, for messages: '--port' or 'RECO_PORT (--port)'."""
        return self._sources.get(dest, dest)


def env_name(flag: str) -> str:
    """RECO_<FLAG> for --flag."""
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()
