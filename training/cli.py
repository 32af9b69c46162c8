"""Command line: generate, check, train, compare feature sets, bench (flags, env fallbacks)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from types import SimpleNamespace

import reco.settings as flags
from reco import SigningKeyError, generate_key_file, signing_key_for
from training.schema import DataError
from training.settings import (
    CALIBRATION_CHOICES,
    DEFAULT_AFFINITY_TOP_K,
    DEFAULT_MAX_BAD_FRACTION,
    DEFAULT_PRODUCTS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    DEFAULT_THREADS,
    DEFAULT_THRESHOLD,
    FEATURE_SET_CHOICES,
    MAX_PRODUCTS,
    SPLIT_CHOICES,
    BusinessAssumptions,
    GenerationSettings,
    TrainSettings,
)

log = logging.getLogger("training")

# Exit codes: refused input and an existing bundle are the caller's to fix, not crashes.
EXIT_BAD_DATA = 2
EXIT_BUNDLE_EXISTS = 3


PROG = "python -m training"


def build_parser() -> flags.SettingsParser:
    """Every command's flags, each with a RECO_<FLAG> environment fallback (see --help)."""
    p = flags.SettingsParser(
        PROG, "Data generator, data-quality checks and training for the click model."
    )
    p.add_flag(flags.LOG_LEVEL)

    gen = p.command("generate", "write impressions.csv, catalog.csv and generation.json")
    gen.add("--rows", flags.integer(1), str(DEFAULT_ROWS), "impression rows to write")
    gen.add(
        "--seed",
        flags.integer(),
        str(DEFAULT_SEED),
        "random seed; same rows + seed give identical files",
    )
    gen.add("--out", flags.required_path, "", "output directory")
    gen.add(
        "--products",
        flags.integer(1),
        str(DEFAULT_PRODUCTS),
        f"catalog size: at least one product per base item, at most {MAX_PRODUCTS:,}",
    )
    gen.add(
        "--notebook",
        flags.boolean,
        "false",
        "also write sessions.csv in the notebook's schema (one row per session)",
    )
    gen.add("--no-progress", flags.boolean, "false", "hide the progress bar")

    check = p.command("check", "print the data-quality report of a data file or directory")
    check.add(
        "--data",
        flags.required_path,
        "",
        "a CSV, or a directory with impressions.csv or sessions.csv",
    )
    _add_max_bad(check)

    fit = p.command("train", "train, evaluate and write a model bundle")
    fit.add(
        "--data",
        flags.required_path,
        "",
        "a CSV, or a directory with impressions.csv (+ catalog.csv) or sessions.csv",
    )
    fit.add(
        "--out",
        flags.required_path,
        "",
        "the new bundle directory (must not exist); its name is the version",
    )
    _add_max_bad(fit)
    fit.add(
        "--threshold",
        flags.number(0, 1),
        str(DEFAULT_THRESHOLD),
        "default confidence threshold (between 0 and 1)",
    )
    _add_threads(fit)
    fit.add(
        "--feature-set",
        flags.optional(flags.choice(*FEATURE_SET_CHOICES)),
        "",
        "impressions only: 'sequence' (the default: adds the decayed whole-session history) "
        "or 'candidate'; the server serves both; notebook rows train the session set",
    )
    fit.add(
        "--split",
        flags.choice(*SPLIT_CHOICES),
        "session",
        "'session': 1/5 of the sessions held out at random; 'time': the 1/5 that started last",
    )
    fit.add(
        "--calibration",
        flags.choice(*CALIBRATION_CHOICES),
        "auto",
        "'auto': fold a Platt step into the trees when validation shows miscalibration "
        "beyond sampling noise; 'platt': always; 'none': never",
    )
    fit.add(
        "--affinity-top-k",
        flags.integer(1),
        str(DEFAULT_AFFINITY_TOP_K),
        "related products each product keeps in the bundle's sparse affinity table",
    )
    fit.add(
        "--business-projection",
        flags.boolean,
        "false",
        "show the business illustration in the report even for generated data",
    )
    defaults = BusinessAssumptions()
    fit.add(
        "--sessions-per-day",
        flags.number(0),
        f"{defaults.sessions_per_day:g}",
        "business projection: sessions per day",
    )
    fit.add(
        "--recs-per-session",
        flags.number(0),
        f"{defaults.recs_per_session:g}",
        "business projection: recommendations shown per session",
    )
    fit.add(
        "--value-per-click",
        flags.number(0),
        f"{defaults.value_per_click:g}",
        "business projection: dollars per click",
    )
    fit.add(
        "--context-free",
        flags.boolean,
        "false",
        "learn from the candidate's own features only (category, price, popularity): a "
        "context-free baseline served through the same interface",
    )
    fit.add_flag(flags.BUNDLE_KEY_FILE)

    _add_distributed(fit)

    learning = p.command(
        "learn",
        "train a bundle from the impression log (shown slots, their logged feature rows, the "
        "clicks attributed to them)",
    )
    learning.add("--logs", flags.required_path, "", "the server's --impression-log-dir")
    learning.add(
        "--base-bundle",
        flags.required_path,
        "",
        "the bundle that served the logged rows (its catalog, affinity and encodings are kept)",
    )
    learning.add("--out", flags.required_path, "", "the new bundle directory (must not exist)")
    _add_window(learning)
    learning.add("--context-free", flags.boolean, "false",
                 "learn from the candidate's own features only")  # fmt: skip
    _add_threads(learning)
    learning.add_flag(flags.BUNDLE_KEY_FILE)

    offline = p.command(
        "ope", "estimate a bundle's click rate per shown slot on logged traffic (IPS, SNIPS, DR)"
    )
    offline.add("--logs", flags.required_path, "", "the server's --impression-log-dir")
    offline.add("--bundle", flags.required_path, "", "the bundle to evaluate (its model.txt)")
    _add_window(offline)
    offline.add("--seed", flags.integer(), "20260101", "bootstrap seed")

    readout = p.command("readout", "the A/B readout per variant from the impression log (Markdown)")
    readout.add("--logs", flags.required_path, "", "the server's --impression-log-dir")
    _add_window(readout)
    readout.add("--since-ms", flags.integer(0), "0", "only responses from this time on (ms)")
    readout.add("--shares", flags.comma_list(str), "A=0.5,B=0.5",
                "configured shares per variant, for the sample-ratio check")  # fmt: skip

    closing = p.command(
        "loop",
        "serve A with exploration, simulated shoppers over gRPC, learn B from the log, "
        "estimate it off-policy, hot-reload it beside A, read the A/B test out",
    )
    closing.add("--data", flags.required_path, "", "generated data (catalog.csv, generation.json)")
    closing.add("--bundle-a", flags.required_path, "", "compiled bundle served as variant A")
    closing.add("--out", flags.required_path, "", "directory of the run (logs, report.md)")
    closing.add("--sessions-before", flags.integer(1), "1500", "sessions before the swap")
    closing.add("--sessions-after", flags.integer(1), "3000", "sessions after the swap")
    closing.add("--epsilon", flags.number(0, 1), "0.2", "exploration of variant A")
    closing.add("--seed", flags.integer(), "1", "shoppers' and exploration's seed")
    _add_window(closing)
    _add_threads(closing)
    closing.add_flag(flags.BUNDLE_KEY_FILE)

    keygen = p.command(
        "keygen", "write a new random bundle signing key, readable by its owner only"
    )
    keygen.add("--out", flags.required_path, "", "key file to create (never replaced)")

    versus = p.command(
        "compare",
        "train feature sets on one split and print their metrics and paired differences",
    )
    versus.add("--data", flags.required_path, "", "impressions (a CSV or directory)")
    versus.add(
        "--feature-sets",
        flags.comma_list(flags.choice(*FEATURE_SET_CHOICES)),
        ",".join(FEATURE_SET_CHOICES),
        "comma-separated feature sets to train; the first is the base of the differences",
    )
    versus.add("--split", flags.choice(*SPLIT_CHOICES), "session", "held-out split")
    versus.add("--threshold", flags.number(0, 1), str(DEFAULT_THRESHOLD), "confidence threshold")
    _add_threads(versus)

    bench = p.command(
        "bench",
        "time generate + train per size and print a markdown table (wall time, peak RSS)",
    )
    bench.add(
        "--rows",
        flags.comma_list(flags.integer(1)),
        "15000,1000000",
        "comma-separated data set sizes to generate and train",
    )
    bench.add("--seed", flags.integer(), str(DEFAULT_SEED), "generator seed")
    bench.add(
        "--dask-workers",
        flags.optional(flags.integer(1)),
        "",
        "instead: one size (the first of --rows), single-machine against distributed training "
        "on this many local workers, interleaved --rounds times",
        env="RECO_BENCH_DASK_WORKERS",
    )
    bench.add(
        "--rounds",
        flags.integer(1),
        "2",
        "rounds of the --dask-workers comparison",
        env="RECO_BENCH_ROUNDS",
    )
    bench.add(
        "--work-dir", flags.required_path, "", "empty directory for the generated data and bundles"
    )
    return p


def _add_threads(parser: flags.SettingsParser) -> None:
    parser.add(
        "--threads",
        flags.integer(1),
        str(DEFAULT_THREADS),
        "LightGBM threads; fixed so training is reproducible",
        env="RECO_TRAIN_THREADS",
    )


def _add_window(parser: flags.SettingsParser) -> None:
    parser.add(
        "--attribution-window-seconds",
        flags.number(positive=True),
        "1800",
        "a click (and a purchase after it) counts for a response within this many seconds",
    )


def _add_distributed(parser: flags.SettingsParser) -> None:
    """Distributed training (training/distributed.py; the `distributed` extra); --dask and
    --dask-workers exclude each other (checked in _run)."""
    parser.add(
        "--dask",
        str,
        "",
        "train with lightgbm.dask on this dask.distributed scheduler (tcp://host:8786) from "
        "partitioned data (impressions/*.parquet, impressions/*.csv, or one CSV read in byte "
        "ranges); writes the same bundle",
        metavar="SCHEDULER",
        env="RECO_DASK_SCHEDULER",
    )
    parser.add(
        "--dask-workers",
        flags.optional(flags.integer(1)),
        "",
        "as --dask, on a local cluster of this many worker processes sharing --threads",
    )


def _add_max_bad(parser: flags.SettingsParser) -> None:
    parser.add(
        "--max-bad-fraction",
        flags.number(0, 1),
        str(DEFAULT_MAX_BAD_FRACTION),
        "refuse the file when more than this fraction of rows fail the rules",
    )


def _run(args: SimpleNamespace) -> None:
    """Dispatches one command.

    Each command imports only what it runs: LightGBM and scikit-learn take seconds to import
    on this machine, and `generate` (called by `make data`) needs neither.
    """
    if args.command == "generate":
        from training.generator import generate  # noqa: PLC0415 - see the docstring

        generate(
            flags.from_settings(
                GenerationSettings,
                args,
                out_dir=args.out,
                n_products=args.products,
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
    elif args.command in ("learn", "ope", "readout", "loop"):
        _run_loop_command(args)
    elif args.command == "keygen":
        new_key = generate_key_file(args.out)
        log.info("wrote a new bundle signing key to %s (key id %s)", args.out, new_key.key_id)
    else:
        if args.dask and args.dask_workers is not None:
            raise flags.SettingError("--dask and --dask-workers exclude each other; give one")
        key = signing_key_for(args.bundle_key_file, f"bundle {args.out}")
        settings = flags.from_settings(
            TrainSettings,
            args,
            num_threads=args.threads,
            business=BusinessAssumptions(
                args.sessions_per_day, args.recs_per_session, args.value_per_click
            ),
        )
        if args.dask or args.dask_workers is not None:
            from training.distributed import Cluster, train_distributed  # noqa: PLC0415

            workers = args.dask_workers
            threads = max(1, settings.num_threads // workers) if workers else settings.num_threads
            cluster = Cluster(args.dask or None, workers, threads_per_worker=threads)
            train_distributed(settings, cluster, key)
        else:
            from training.pipeline import train  # noqa: PLC0415

            train(settings, key)


def _run_loop_command(args: SimpleNamespace) -> None:
    """learn, ope, readout and loop: the commands that read the impression log."""
    import json  # noqa: PLC0415

    window = args.attribution_window_seconds
    if args.command == "learn":
        from training.learn import LearnSettings, learn  # noqa: PLC0415

        key = signing_key_for(args.bundle_key_file, f"bundle {args.out}")
        learning = flags.from_settings(LearnSettings, args, base=args.base_bundle,
                                       window_seconds=window)  # fmt: skip
        report = learn(learning, key)
        print(json.dumps(report, indent=2))
    elif args.command == "ope":
        from training.ope import off_policy  # noqa: PLC0415

        print(json.dumps(off_policy(args.logs, args.bundle, window, args.seed), indent=2))
    elif args.command == "readout":
        from training.logs import attribute, read_events, read_responses  # noqa: PLC0415
        from training.readout import readout, to_markdown  # noqa: PLC0415

        slots = attribute(read_responses(args.logs), read_events(args.logs), window)
        keep = slots.frame["time_ms"].to_numpy() >= args.since_ms
        slots = slots.where(keep)
        shares = {}
        for item in args.shares:
            name, _, value = item.partition("=")
            shares[name] = float(value)
        print("\n".join(to_markdown(readout(slots, shares))))
    else:
        from training.loop import LoopSettings, run  # noqa: PLC0415

        key = signing_key_for(args.bundle_key_file, f"loop {args.out}")
        settings = flags.from_settings(LoopSettings, args, window_seconds=window,
                                       key_file=args.bundle_key_file)  # fmt: skip
        run(settings, key)
        print((args.out / "report.md").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit code (2 for a bad setting or refused data)."""
    return flags.run_cli(PROG, lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = SimpleNamespace(**build_parser().parse(argv))
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        _run(args)
    except (DataError, SigningKeyError, ValueError) as exc:  # ValueError: bad values (rows, ...)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_DATA
    except FileExistsError as exc:  # BundleExistsError (bundles are immutable), keygen's file
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUNDLE_EXISTS
    return 0
