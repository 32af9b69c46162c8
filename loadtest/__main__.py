"""Entry point: `python -m loadtest --help`."""

from __future__ import annotations

import logging
import sys

from loadtest.cli import parse_settings
from loadtest.commands import execute
from loadtest.generator import GeneratorError
from loadtest.probe import TargetNotReadyError
from loadtest.products import CatalogError
from reco.settings import EXIT_BAD_SETTING, run_cli

# Exit codes: 0 PASS, 1 FAIL (SLO breached), 2 could not run (bad flags, no server, ...).
EXIT_CANNOT_RUN = EXIT_BAD_SETTING


def main(argv: list[str] | None = None) -> int:
    """Parses flags, runs, returns the exit code (a bad flag: one line, exit 2)."""
    return run_cli("python -m loadtest", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    settings, verbose = parse_settings(argv)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return execute(settings)
    except (GeneratorError, TargetNotReadyError, CatalogError, ValueError) as exc:
        logging.getLogger("loadtest").error("cannot run: %s", exc)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        logging.getLogger("loadtest").error("interrupted")
        return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
