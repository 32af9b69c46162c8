"""Entry point: `python -m server --bundle artifacts/latest --port 50051` (see --help)."""

from __future__ import annotations

import logging
import sys

from reco.settings import EXIT_BAD_SETTING, run_cli
from server.core.errors import Unavailable
from server.preflight import prepare
from server.settings import parse_settings

PROG = "python -m server"


def main(argv: list[str] | None = None) -> int:
    """Parses and checks the settings, configures logging and runs the server (or its worker
    processes). Every start-up failure is one line on stderr and exit status 2."""
    return run_cli(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    # A bundle that cannot serve is the operator's to fix too: logged, then exit status 2.
    try:
        settings = parse_settings(argv)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
        )
        settings = prepare(settings)
        if settings.workers > 1:
            from server.workers import supervise  # noqa: PLC0415 - only the parent needs it

            if settings.require_durable_sessions:
                # Refuse in one line here, before any worker starts (each checks again).
                from server.core.redis_store import RedisStore  # noqa: PLC0415 - no grpc

                RedisStore(settings.session_store).check_persistence(require_durable=True)
            return supervise(settings)
        from server.app import run  # noqa: PLC0415 - after logging is configured

        run(settings)
    except Unavailable as exc:
        logging.getLogger("server").error("%s", exc)
        return EXIT_BAD_SETTING
    return 0


if __name__ == "__main__":
    sys.exit(main())
