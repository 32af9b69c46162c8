"""Command line: `python -m compiler build|bench|request-bench|synthetic ...` (see --help)."""

from __future__ import annotations

import logging
import os
import sys
from types import SimpleNamespace

import reco.settings as flags
from compiler.bench import BenchError, BenchOptions, run_bench
from compiler.build import BuildError, BuildOptions, build_bundle
from compiler.cache import CACHE_ENV, default_cache_dir
from compiler.codegen_choice import CODEGENS
from compiler.flatgen import BLOCK_ROWS, MAX_DEPTH
from compiler.request_bench import RequestBenchError, RequestBenchOptions, run_request_bench
from compiler.synthetic import SyntheticSpec, write_synthetic_bundle
from compiler.toolchain import OPT_LEVELS, TARGETS
from reco import BackendError, BundleError, RequestKernelError, SigningKeyError, signing_key_for

logger = logging.getLogger("compiler")


PROG = "python -m compiler"


def _parser() -> flags.SettingsParser:
    """Every command's flags: RECO_COMPILER_<FLAG> fallbacks (the key, log level and CC as
    everywhere else)."""
    p = flags.SettingsParser(PROG, __doc__ or "", env_prefix="RECO_COMPILER_")
    p.add(
        flags.LOG_LEVEL.flag,
        flags.LOG_LEVEL.parse,
        flags.LOG_LEVEL.default,
        flags.LOG_LEVEL.help,
        env="RECO_LOG_LEVEL",
    )
    defaults = BuildOptions()

    build = p.command(
        "build", "compile a bundle's model.txt into model.so and model.onnx, checked for parity"
    )
    build.add("bundle", flags.required_path, "", "bundle directory written by training")
    build.add(
        "--codegen",
        flags.choice(*CODEGENS),
        defaults.codegen,
        "C generator: flat (branch-free, padded trees), tl2cgen, or auto = flat when the model "
        f"is eligible (numerical splits, depth <= {MAX_DEPTH}), else tl2cgen",
    )
    build.add(
        "--block-rows",
        flags.choice(*map(str, BLOCK_ROWS)),
        str(defaults.block_rows),
        "flat: rows walked through each tree together",
    )
    build.add(
        "--target",
        flags.choice(*TARGETS),
        defaults.target,
        "portable: any x86-64 CPU; native: this CPU only",
    )
    build.add(
        "--quantize",
        flags.boolean,
        str(defaults.quantize).lower(),
        "tl2cgen: quantize, compare flags.integer bin indices instead of doubles",
    )
    build.add(
        "--annotate",
        flags.boolean,
        str(defaults.annotate).lower(),
        "tl2cgen: mark branches LIKELY/UNLIKELY from train_sample.npy (annotate_branch)",
    )
    build.add(
        "--parallel-comp",
        flags.integer(0),
        str(defaults.parallel_comp),
        "tl2cgen: split the trees over N C files compiled in parallel (0: one file)",
        metavar="N",
    )
    build.add("--opt-level", flags.choice(*OPT_LEVELS), defaults.opt_level, "gcc -O level")
    build.add("--cc", str, defaults.cc, "C compiler", env="CC")
    build.add("--jobs", flags.integer(1), str(os.cpu_count() or 1), "parallel compiler processes")
    build.add(
        "--cache-dir",
        flags.required_path,
        str(default_cache_dir()),
        "content-addressed build cache",
        env=CACHE_ENV,
    )
    build.add("--no-cache", flags.boolean, "false", "neither use nor fill the cache")
    build.add_flag(
        flags.BUNDLE_KEY_FILE,
        ": the signature is checked before building and the updated manifest signed",
    )

    bench = p.command("bench", "latency of every backend per call and per row on fresh rows")
    bench.add("bundle", flags.required_path, "", "a compiled bundle directory")
    bench_defaults = BenchOptions()
    _add_batch_sizes(bench, bench_defaults.batch_sizes, "rows per call")
    bench.add("--repeats", flags.integer(1), str(bench_defaults.repeats), "runs per cell")
    bench.add(
        "--pool-rows", flags.integer(1), str(bench_defaults.pool_rows), "fresh rows generated"
    )
    bench.add("--seed", flags.integer(), str(bench_defaults.seed), "row pool seed")
    bench.add(
        "--variants",
        flags.boolean,
        "false",
        "also build and time compile variants (flat: rows per block, -O2, native; tl2cgen: "
        "quantize, annotation, -O2, native)",
    )
    bench.add(
        "--other-codegens",
        flags.boolean,
        str(bench_defaults.other_codegens).lower(),
        "also build and time the library of each code generator the bundle's is not from",
    )
    bench.add(
        "--serving-shape",
        flags.boolean,
        "false",
        "batches as the server builds them: one session's columns shared by every row",
    )

    request_bench = p.command(
        "request-bench",
        "one request's rows and scores: numpy vs native rows, flat vs folded (Markdown)",
    )
    request_bench.add("bundle", flags.required_path, "", "a compiled bundle of the candidate set")
    request_defaults = RequestBenchOptions()
    _add_batch_sizes(request_bench, request_defaults.batch_sizes, "candidates per request")
    request_bench.add(
        "--rounds", flags.integer(1), str(request_defaults.rounds), "interleaved rounds"
    )
    request_bench.add("--seed", flags.integer(), str(request_defaults.seed), "request seed")
    request_bench.add(
        "--callgrind",
        flags.boolean,
        str(request_defaults.callgrind).lower(),
        "count the C instructions per request with valgrind's callgrind",
    )

    synthetic = p.command(
        "synthetic",
        "write a bundle with a LightGBM model trained on random rows (tests, benchmarks)",
    )
    spec = SyntheticSpec()
    synthetic.add("out", flags.required_path, "", "bundle directory to create")
    synthetic.add("--trees", flags.integer(1), str(spec.n_trees), "trees")
    synthetic.add("--max-depth", flags.integer(1), str(spec.max_depth), "deepest tree")
    synthetic.add("--num-leaves", flags.integer(2), str(spec.num_leaves), "most leaves per tree")
    synthetic.add("--rows", flags.integer(1), str(spec.n_rows), "training rows")
    synthetic.add("--seed", flags.integer(), str(spec.seed), "random seed")
    return p


def _add_batch_sizes(parser: flags.SettingsParser, default: tuple[int, ...], what: str) -> None:
    parser.add(
        "--batch-sizes",
        flags.comma_list(flags.integer(1)),
        ",".join(map(str, default)),
        f"comma-separated {what}",
    )


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the process exit code (2 for a bad setting, 1 for a failure)."""
    return flags.run_cli(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = SimpleNamespace(**_parser().parse(argv))
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "build":
            options = flags.from_settings(
                BuildOptions,
                args,
                block_rows=int(args.block_rows),
                cache_dir=None if args.no_cache else args.cache_dir,
            )
            key = signing_key_for(args.bundle_key_file, f"bundle {args.bundle}")
            build_bundle(args.bundle, options, key)
        elif args.command == "bench":
            options_bench = flags.from_settings(BenchOptions, args)
            print(run_bench(args.bundle, options_bench))
        elif args.command == "request-bench":
            options_request = flags.from_settings(RequestBenchOptions, args)
            print(run_request_bench(args.bundle, options_request))
        else:
            spec = SyntheticSpec(
                n_trees=args.trees,
                max_depth=args.max_depth,
                num_leaves=args.num_leaves,
                n_rows=args.rows,
                seed=args.seed,
            )
            write_synthetic_bundle(args.out, spec)
            logger.info("wrote synthetic bundle %s", args.out)
    except (
        BuildError,
        BackendError,
        BundleError,
        BenchError,
        RequestBenchError,
        RequestKernelError,
        SigningKeyError,
    ) as exc:
        logger.error("%s", exc)
        return 1
    except OSError as exc:  # e.g. a read-only bundle directory or a full disk
        logger.error("%s: %s", type(exc).__name__, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
