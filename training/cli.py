"""Command line: generate, check, train, compare feature sets, bench (flags, env fallbacks)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from training.schema import DataError
from training.settings import (
    CALIBRATION_CHOICES,
    DEFAULT_MAX_BAD_FRACTION,
    DEFAULT_PRODUCTS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    DEFAULT_THREADS,
    DEFAULT_THRESHOLD,
    FEATURE_SET_CHOICES,
    SPLIT_CHOICES,
    BusinessAssumptions,
    GenerationSettings,
    TrainSettings,
)
from training.signing import SigningKeyError, generate_key_file, signing_key_for

log = logging.getLogger("training")

T = TypeVar("T")

# Exit codes: refused input and an existing bundle are the caller's to fix, not crashes.
EXIT_BAD_DATA = 2
EXIT_BUNDLE_EXISTS = 3


def _env(name: str, default: T, kind: Callable[[str], T]) -> T:
    """The environment variable's value converted by `kind`, else the default."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name}={raw!r} is not a valid value") from None


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all three commands."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Data generator, data-quality checks and training for the click model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        default=_env("RECO_LOG_LEVEL", "INFO", str),
        help="logging level (env RECO_LOG_LEVEL)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser(
        "generate",
        help="write impressions.csv, catalog.csv and generation.json",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    gen.add_argument(
        "--rows",
        type=int,
        default=_env("RECO_ROWS", DEFAULT_ROWS, int),
        help="impression rows to write (env RECO_ROWS)",
    )
    gen.add_argument(
        "--seed",
        type=int,
        default=_env("RECO_SEED", DEFAULT_SEED, int),
        help="random seed; same rows + seed give identical files (env RECO_SEED)",
    )
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    gen.add_argument(
        "--products",
        type=int,
        default=DEFAULT_PRODUCTS,
        help="catalog size (at least one product per base item)",
    )
    gen.add_argument(
        "--notebook",
        action="store_true",
        help="also write sessions.csv in the notebook's schema (one row per session)",
    )
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    check = commands.add_parser(
        "check",
        help="print the data-quality report of a data file or directory",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    check.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a CSV, or a directory with impressions.csv or sessions.csv",
    )
    _add_max_bad(check)

    fit = commands.add_parser(
        "train",
        help="train, evaluate and write a model bundle",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fit.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a CSV, or a directory with impressions.csv (+ catalog.csv) or sessions.csv",
    )
    fit.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the new bundle directory (must not exist); its name is the version",
    )
    _add_max_bad(fit)
    fit.add_argument(
        "--threshold",
        type=float,
        default=_env("RECO_THRESHOLD", DEFAULT_THRESHOLD, float),
        help="default confidence threshold (env RECO_THRESHOLD)",
    )
    fit.add_argument(
        "--threads",
        type=int,
        default=_env("RECO_TRAIN_THREADS", DEFAULT_THREADS, int),
        help="LightGBM threads; fixed so training is reproducible (env RECO_TRAIN_THREADS)",
    )
    fit.add_argument(
        "--feature-set",
        choices=FEATURE_SET_CHOICES,
        default=_env("RECO_FEATURE_SET", None, str),
        help="impressions only: 'candidate' (what the server serves) or 'sequence' (adds the "
        "decayed whole-session history; not servable yet); default: what the schema trains "
        "(env RECO_FEATURE_SET)",
    )
    fit.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default=_env("RECO_SPLIT", "session", str),
        help="'session': 1/5 of the sessions held out at random; 'time': the 1/5 that started "
        "last (env RECO_SPLIT)",
    )
    fit.add_argument(
        "--calibration",
        choices=CALIBRATION_CHOICES,
        default=_env("RECO_CALIBRATION", "auto", str),
        help="'auto': fold a Platt step into the trees when validation shows miscalibration "
        "beyond sampling noise; 'platt': always; 'none': never (env RECO_CALIBRATION)",
    )
    fit.add_argument(
        "--business-projection",
        action="store_true",
        help="show the business illustration in the report even for generated data",
    )
    defaults = BusinessAssumptions()
    fit.add_argument(
        "--sessions-per-day",
        type=float,
        default=defaults.sessions_per_day,
        help="business projection: sessions per day",
    )
    fit.add_argument(
        "--recs-per-session",
        type=float,
        default=defaults.recs_per_session,
        help="business projection: recommendations shown per session",
    )
    fit.add_argument(
        "--value-per-click",
        type=float,
        default=defaults.value_per_click,
        help="business projection: dollars per click",
    )

    _add_distributed(fit)
    fit.add_argument(
        "--bundle-key-file",
        type=Path,
        default=_env("RECO_BUNDLE_KEY_FILE", None, Path),
        help="sign manifest.json with this HMAC key (python -m training keygen makes one; the "
        "key may also come from RECO_BUNDLE_KEY) (env RECO_BUNDLE_KEY_FILE)",
    )

    keygen = commands.add_parser(
        "keygen",
        help="write a new random bundle signing key, readable by its owner only",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    keygen.add_argument(
        "--out", type=Path, required=True, help="key file to create (never replaced)"
    )

    versus = commands.add_parser(
        "compare",
        help="train feature sets on one split and print their metrics and paired differences",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    versus.add_argument("--data", type=Path, required=True, help="impressions (a CSV or directory)")
    versus.add_argument(
        "--feature-sets",
        nargs="+",
        choices=FEATURE_SET_CHOICES,
        default=list(FEATURE_SET_CHOICES),
        help="feature sets to train; the first is the base of the differences",
    )
    versus.add_argument("--split", choices=SPLIT_CHOICES, default="session", help="held-out split")
    versus.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="confidence threshold"
    )
    versus.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="LightGBM threads")

    bench = commands.add_parser(
        "bench",
        help="time generate + train per size and print a markdown table (wall time, peak RSS)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bench.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[15_000, 1_000_000],
        help="data set sizes to generate and train",
    )
    bench.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    bench.add_argument(
        "--dask-workers",
        type=int,
        default=None,
        help="instead: one size (the first of --rows), single-machine against distributed "
        "training on this many local workers, interleaved --rounds times",
    )
    bench.add_argument("--rounds", type=int, default=2, help="rounds of the --dask-workers run")
    bench.add_argument(
        "--work-dir",
        type=Path,
        required=True,
        help="empty directory for the generated data and bundles",
    )
    return parser


def _add_distributed(parser: argparse.ArgumentParser) -> None:
    """Distributed training (training/distributed.py; the `distributed` extra)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--dask",
        metavar="SCHEDULER",
        default=_env("RECO_DASK_SCHEDULER", None, str),
        help="train with lightgbm.dask on this dask.distributed scheduler (tcp://host:8786) "
        "from partitioned data (impressions/*.parquet, impressions/*.csv, or one CSV read in "
        "byte ranges); writes the same bundle (env RECO_DASK_SCHEDULER)",
    )
    where.add_argument(
        "--dask-workers",
        type=int,
        default=_env("RECO_DASK_WORKERS", None, int),
        help="as --dask, on a local cluster of this many worker processes sharing --threads "
        "(env RECO_DASK_WORKERS)",
    )


def _add_max_bad(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-bad-fraction",
        type=float,
        default=_env("RECO_MAX_BAD_FRACTION", DEFAULT_MAX_BAD_FRACTION, float),
        help="refuse the file when more than this fraction of rows fail the rules "
        "(env RECO_MAX_BAD_FRACTION)",
    )


def _run(args: argparse.Namespace) -> None:
    """Dispatches one command.

    Each command imports only what it runs: LightGBM and scikit-learn take seconds to import
    on this machine, and `generate` (called by `make data`) needs neither.
    """
    if args.command == "generate":
        from training.generator import generate  # noqa: PLC0415 - see the docstring

        generate(
            GenerationSettings(
                rows=args.rows,
                seed=args.seed,
                out_dir=args.out,
                n_products=args.products,
                notebook=args.notebook,
                progress=not args.no_progress,
            )
        )
    elif args.command == "check":
        from training.dataset import load_dataset  # noqa: PLC0415

        print(load_dataset(args.data, args.max_bad_fraction).quality.to_text())
    elif args.command == "compare":
        from training.compare import compare  # noqa: PLC0415

        lines = compare(args.data, args.feature_sets, args.split, args.threshold, args.threads)
        print("\n".join(lines))
    elif args.command == "bench":
        from training.benchmark import benchmark, compare_distributed  # noqa: PLC0415

        if args.dask_workers is not None:
            rows = args.rows[0]
            lines = compare_distributed(rows, args.seed, args.work_dir, args.dask_workers,
                                        args.rounds)  # fmt: skip
        else:
            lines = benchmark(args.rows, args.seed, args.work_dir)
        print("\n".join(lines))
    elif args.command == "keygen":
        new_key = generate_key_file(args.out)
        log.info("wrote a new bundle signing key to %s (key id %s)", args.out, new_key.key_id)
    else:
        key = signing_key_for(args.bundle_key_file, f"bundle {args.out}")
        settings = TrainSettings(
            data=args.data,
            out=args.out,
            threshold=args.threshold,
            num_threads=args.threads,
            max_bad_fraction=args.max_bad_fraction,
            business=BusinessAssumptions(
                args.sessions_per_day, args.recs_per_session, args.value_per_click
            ),
            feature_set=args.feature_set,
            split=args.split,
            calibration=args.calibration,
            business_projection=args.business_projection,
        )
        if args.dask or args.dask_workers is not None:
            from training.distributed import Cluster, train_distributed  # noqa: PLC0415

            workers = args.dask_workers
            if workers is not None and workers < 1:
                raise ValueError(f"--dask-workers must be at least 1, got {workers}")
            threads = max(1, settings.num_threads // workers) if workers else settings.num_threads
            cluster = Cluster(args.dask, workers, threads_per_worker=threads)
            train_distributed(settings, cluster, key)
        else:
            from training.pipeline import train  # noqa: PLC0415

            train(settings, key)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        _run(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_DATA
    except SigningKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_DATA
    except FileExistsError as exc:  # BundleExistsError (bundles are immutable), keygen's file
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUNDLE_EXISTS
    except ValueError as exc:  # bad flag values (rows <= 0, catalog too small, ...)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_DATA
    return 0
