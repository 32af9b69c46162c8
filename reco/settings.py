"""The one settings mechanism of every CLI: typed flags, each with a RECO_* environment fallback
and a documented default; a bad value is one line naming its source (exit 2 through run_cli).

Standard library only, so every package may import it (the load tester too)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

ENV_PREFIX = "RECO_"
# A bad setting is the operator's to fix: every CLI exits with this status, after one line.
EXIT_BAD_SETTING = 2
# Values echoed in error messages are cut to this many characters.
SHOWN_CHARS = 64

Parse = Callable[[str], Any]
T = TypeVar("T")


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


def optional(parse: Parse) -> Parse:
    """`parse`, or None for an empty value (a bound that may be left unset)."""

    def parse_optional(text: str) -> Any:
        return None if not text.strip() else parse(text)

    return parse_optional


def comma_list(parse: Parse, minimum: int = 1) -> Parse:
    """A comma-separated list of `parse` values, at least `minimum` of them."""

    def parse_list(text: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if len(parts) < minimum:
            raise ValueError(f"must be a comma-separated list of at least {minimum}")
        values = []
        for part in parts:
            try:
                values.append(parse(part))
            except ValueError as exc:
                raise ValueError(f"must be a comma-separated list whose items {exc}") from None
        return tuple(values)

    return parse_list


@dataclass(frozen=True)
class Flag:
    """A flag several CLIs take, declared once (e.g. BUNDLE_KEY_FILE); SettingsParser.add_flag."""

    flag: str
    parse: Parse
    default: str
    help: str
    metavar: str = ""


BUNDLE_KEY_FILE = Flag(
    "--bundle-key-file",
    optional_path,
    "",
    "HMAC-SHA256 key of bundle signatures (manifest.json.sig): writers sign with it, the server "
    "requires it; the key itself may come from RECO_BUNDLE_KEY instead (`python -m training "
    "keygen` makes one)",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL = Flag("--log-level", choice(*LOG_LEVELS, case_insensitive=True), "INFO", "logging level")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that raises SettingError instead of printing its usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise SettingError(message)


class SettingsParser:
    """Flags declared once each (parser, default, help); every flag falls back to an environment
    variable (RECO_<FLAG>, or the prefix given, or one named per flag), then to its documented
    default. parse() returns {dest: typed value} or raises SettingError. Subcommands
    (command()) declare their own flags; `command` in the result names the one chosen."""

    def __init__(
        self,
        prog: str,
        description: str,
        env_prefix: str = ENV_PREFIX,
        argparser: argparse.ArgumentParser | None = None,
    ) -> None:
        self.argparser = argparser or _OneLineParser(
            prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        self.env_prefix = env_prefix
        # dest -> (flag, parse, default, env or None, nargs)
        self._flags: dict[str, tuple[str, Parse, str, str | None, str | None]] = {}
        self._sources: dict[str, str] = {}
        self._commands: dict[str, SettingsParser] = {}
        self._subparsers: Any = None

    def add(self, flag: str, parse: Parse, default: str, help: str, metavar: str = "", *,
            env: str | None = "", nargs: str | None = None, short: str = "") -> None:  # fmt: skip
        """Declares `--flag` (typed by `parse`, which raises ValueError naming the requirement),
        or a positional argument when `flag` has no leading dashes (required, no fallback).

        env: "" = the prefix + the flag's name, a name = that variable, None = none. nargs "+"
        or "*" takes several values (the environment's are separated by commas)."""
        positional = not flag.startswith("-")
        dest = flag.removeprefix("--").replace("-", "_")
        env_var = None if positional or env is None else (env or self.env_name(flag))
        if positional:
            self.argparser.add_argument(flag, metavar=metavar or dest.upper(), help=help)
            self._flags[dest] = (flag, parse, default, None, None)
            return
        shown_default = default if default else "unset"
        where = f" [{env_var}]" if env_var else ""
        # A boolean flag works as a switch (`--flag`), negated (`--no-flag`), and with a value.
        switch: dict[str, Any] = {"nargs": "?", "const": "true"} if parse is boolean else {}
        if nargs:
            switch = {"nargs": nargs}
        names = [flag, short] if short else [flag]
        self.argparser.add_argument(
            *names,
            dest=dest,
            default=argparse.SUPPRESS,
            metavar=metavar or dest.upper(),
            help=f"{help} (default: {shown_default}){where}".replace("%", "%%"),
            **switch,
        )
        if parse is boolean:
            self.argparser.add_argument(
                "--no-" + flag.removeprefix("--"),
                dest=dest,
                action="store_const",
                const="false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        self._flags[dest] = (flag, parse, default, env_var, nargs)

    def add_flag(self, spec: Flag, help_suffix: str = "") -> None:
        """Declares a flag shared by several CLIs (its text once, here)."""
        self.add(spec.flag, spec.parse, spec.default, spec.help + help_suffix, spec.metavar)

    def command(self, name: str, help: str, env_prefix: str | None = None) -> SettingsParser:
        """A subcommand with flags of its own (`prog NAME --flag ...`)."""
        if self._subparsers is None:
            self._subparsers = self.argparser.add_subparsers(
                dest="command", required=True, parser_class=_OneLineParser
            )
        sub = self._subparsers.add_parser(
            name, help=help, description=help, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        child = SettingsParser(name, help, env_prefix or self.env_prefix, argparser=sub)
        self._commands[name] = child
        return child

    def parse(
        self, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Typed values of every flag: the command line, else the environment, else the default."""
        environ = os.environ if environ is None else environ
        given = vars(self.argparser.parse_args(argv))
        values = self._resolve(given, environ)
        if self._commands:
            command = given["command"]
            values["command"] = command
            values.update(self._commands[command]._resolve(given, environ))
            self._sources.update(self._commands[command]._sources)
        return values

    def _resolve(self, given: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for dest, (flag, parse, default, env, nargs) in self._flags.items():
            if dest in given:
                text, source = given[dest], flag
            elif env is not None and env in environ:
                text, source = environ[env], f"{env} ({flag})"
                if nargs:
                    text = [part for part in text.split(",") if part]
            else:
                text, source = ([] if nargs else default), flag
            self._sources[dest] = source
            items = text if nargs else [text]
            try:
                parsed = [parse(item) for item in items]
            except ValueError as exc:
                bad = next(i for i in items if not _parses(parse, i))
                raise SettingError(f"{source} {exc}, got {shown(bad)}") from None
            values[dest] = tuple(parsed) if nargs else parsed[0]
        return values

    def source(self, dest: str) -> str:
        """Where a parsed value came from, for messages: '--port' or 'RECO_PORT (--port)'."""
        return self._sources.get(dest, dest)

    def env_name(self, flag: str) -> str:
        """<prefix><FLAG> for --flag (RECO_PORT for --port)."""
        return self.env_prefix + flag.removeprefix("--").replace("-", "_").upper()


def _parses(parse: Parse, text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def env_name(flag: str) -> str:
    """RECO_<FLAG> for --flag."""
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


def run_cli(prog: str, main: Callable[[], int | None]) -> int:
    """Runs a CLI's main: a SettingError (a bad flag or environment value, a taken port, an
    unusable file) is one line on stderr and exit status 2, never a traceback."""
    try:
        return main() or 0
    except SettingError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING


def from_settings(cls: type[T], settings: object, **overrides: Any) -> T:
    """An options dataclass filled from the parsed settings of the same names.

    A field no setting names keeps its default; `overrides` give the fields whose setting has
    another name or needs converting. One place, so a new option is declared and passed once.
    """
    given = settings if isinstance(settings, Mapping) else vars(settings)
    values = {
        f.name: given[f.name]
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in given and f.name not in overrides
    }
    return cls(**values, **overrides)
