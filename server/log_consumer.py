"""Entry point: `python -m server.log_consumer --redis URL --out DIR` (see --help)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import SimpleNamespace

import reco.settings as flags
from server.core.log_consumer import ConsumerSettings, LogConsumer, default_consumer_name
from server.settings import REDIS_SCHEMES

PROG = "python -m server.log_consumer"


def build_parser() -> flags.SettingsParser:
    """The consumer's flags, each with a RECO_<FLAG> environment fallback."""
    p = flags.SettingsParser(
        PROG,
        "Writes the servers' --impression-log-redis streams to the same Parquet files as "
        "--impression-log-dir (a consumer group: run several, each entry is written once).",
    )
    p.add_flag(flags.LOG_LEVEL)
    p.add("--redis", str, "", "the servers' --impression-log-redis URL")
    p.add("--out", flags.required_path, "", "the log directory (training learn/ope/readout --logs)")
    p.add("--group", str, "reco-log", "consumer group (one per log directory)")
    p.add("--consumer", str, "", "this consumer's name in the group (default host-pid)")
    p.add("--batch", flags.integer(1), "2000", "entries per file at most")
    p.add("--interval-seconds", flags.number(positive=True), "10", "cut a file at least this often")
    p.add("--claim-idle-seconds", flags.number(positive=True), "60",
          "re-claim entries another consumer left pending this long")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Consumes until SIGTERM or SIGINT, then writes and acknowledges what it holds."""
    return flags.run_cli(PROG, lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = SimpleNamespace(**build_parser().parse(argv))
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if not args.redis.startswith(REDIS_SCHEMES):
        raise flags.SettingError(f"--redis must be a redis:// URL, got {args.redis[:12]!r}...")
    name = args.consumer or default_consumer_name()
    consumer = LogConsumer(flags.from_settings(ConsumerSettings, args, consumer=name))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    logging.getLogger(__name__).info("%s", consumer.describe())
    consumer.run(stop)
    logging.getLogger(__name__).info("log consumer stopped: wrote %s", consumer.written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
