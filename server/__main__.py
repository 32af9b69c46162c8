"""Entry point: `python -m server --bundle artifacts/latest --port 50051` (see --help)."""

from __future__ import annotations

import logging
import sys

from server.core.errors import Unavailable
from server.settings import parse_settings


def main(argv: list[str] | None = None) -> int:
    """Parses settings, configures logging and runs the server (or its worker processes)."""
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    try:
        if settings.workers > 1:
            from server.workers import supervise  # noqa: PLC0415 - only the parent needs it

            return supervise(settings)
        from server.app import run  # noqa: PLC0415 - after logging is configured

        run(settings)
    except Unavailable as exc:
        logging.getLogger("server").error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
