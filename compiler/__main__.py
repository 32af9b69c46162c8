"""Command line: `python -m compiler build|bench|request-bench|synthetic ...` (see --help)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

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


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--batch-sizes must be integers, got {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batch-sizes must be >= 1, got {text!r}")
    return sizes


def _add_batch_sizes(parser: argparse.ArgumentParser, default: tuple[int, ...], what: str) -> None:
    parser.add_argument(
        "--batch-sizes", type=_batch_sizes, default=default, help=f"comma-separated {what}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compiler", description=__doc__)
    parser.add_argument(
        "--log-level",
        default=_env("RECO_LOG_LEVEL", "INFO"),
        help="logging level (env RECO_LOG_LEVEL; default %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = BuildOptions()

    build = commands.add_parser(
        "build",
        help="compile a bundle's model.txt into model.so and model.onnx, checked for parity",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    build.add_argument("bundle", type=Path, help="bundle directory written by training")
    build.add_argument(
        "--codegen",
        choices=CODEGENS,
        default=_env("RECO_COMPILER_CODEGEN", defaults.codegen),
        help="C generator: flat (branch-free, padded trees), tl2cgen, or auto = flat when the "
        f"model is eligible (numerical splits, depth <= {MAX_DEPTH}), else tl2cgen "
        "(env RECO_COMPILER_CODEGEN)",
    )
    build.add_argument(
        "--block-rows",
        type=int,
        choices=BLOCK_ROWS,
        default=defaults.block_rows,
        help="flat: rows walked through each tree together",
    )
    build.add_argument(
        "--target",
        choices=TARGETS,
        default=_env("RECO_COMPILER_TARGET", defaults.target),
        help="portable: any x86-64 CPU; native: this CPU only (env RECO_COMPILER_TARGET)",
    )
    build.add_argument(
        "--quantize",
        action=argparse.BooleanOptionalAction,
        default=defaults.quantize,
        help="tl2cgen: quantize, compare integer bin indices instead of doubles",
    )
    build.add_argument(
        "--annotate",
        action=argparse.BooleanOptionalAction,
        default=defaults.annotate,
        help="tl2cgen: mark branches LIKELY/UNLIKELY from train_sample.npy (annotate_branch)",
    )
    build.add_argument(
        "--parallel-comp",
        type=int,
        default=defaults.parallel_comp,
        metavar="N",
        help="tl2cgen: split the trees over N C files compiled in parallel (0: one file)",
    )
    build.add_argument(
        "--opt-level", choices=OPT_LEVELS, default=defaults.opt_level, help="gcc -O level"
    )
    build.add_argument("--cc", default=_env("CC", defaults.cc), help="C compiler (env CC)")
    build.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiler processes"
    )
    build.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help=f"content-addressed build cache (env {CACHE_ENV})",
    )
    build.add_argument("--no-cache", action="store_true", help="neither use nor fill the cache")
    build.add_argument(
        "--bundle-key-file",
        type=Path,
        default=_env("RECO_BUNDLE_KEY_FILE", "") or None,
        help="HMAC key: the manifest's signature is checked before building and the updated "
        "manifest signed (the key may also come from RECO_BUNDLE_KEY) (env RECO_BUNDLE_KEY_FILE)",
    )

    bench = commands.add_parser(
        "bench",
        help="latency of every backend per call and per row on fresh rows (Markdown)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bench.add_argument("bundle", type=Path, help="a compiled bundle directory")
    bench_defaults = BenchOptions()
    _add_batch_sizes(bench, bench_defaults.batch_sizes, "rows per call")
    bench.add_argument("--repeats", type=int, default=bench_defaults.repeats, help="runs per cell")
    bench.add_argument(
        "--pool-rows", type=int, default=bench_defaults.pool_rows, help="fresh rows generated"
    )
    bench.add_argument("--seed", type=int, default=bench_defaults.seed, help="row pool seed")
    bench.add_argument(
        "--variants",
        action="store_true",
        help="also build and time compile variants (flat: rows per block, -O2, native; "
        "tl2cgen: quantize, annotation, -O2, native)",
    )
    bench.add_argument(
        "--other-codegens",
        action=argparse.BooleanOptionalAction,
        default=bench_defaults.other_codegens,
        help="also build and time the library of each code generator the bundle's is not from",
    )

    bench.add_argument(
        "--serving-shape",
        action="store_true",
        help="batches as the server builds them: one session's columns shared by every row",
    )

    request_bench = commands.add_parser(
        "request-bench",
        help="one request's rows and scores: numpy vs native rows, flat vs folded (Markdown)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    request_bench.add_argument("bundle", type=Path, help="a compiled bundle of the candidate set")
    request_defaults = RequestBenchOptions()
    _add_batch_sizes(request_bench, request_defaults.batch_sizes, "candidates per request")
    request_bench.add_argument(
        "--rounds", type=int, default=request_defaults.rounds, help="interleaved rounds"
    )
    request_bench.add_argument("--seed", type=int, default=request_defaults.seed)
    request_bench.add_argument(
        "--callgrind",
        action=argparse.BooleanOptionalAction,
        default=request_defaults.callgrind,
        help="count the C instructions per request with valgrind's callgrind",
    )

    synthetic = commands.add_parser(
        "synthetic",
        help="write a bundle with a LightGBM model trained on random rows (tests, benchmarks)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    spec = SyntheticSpec()
    synthetic.add_argument("out", type=Path, help="bundle directory to create")
    synthetic.add_argument("--trees", type=int, default=spec.n_trees)
    synthetic.add_argument("--max-depth", type=int, default=spec.max_depth)
    synthetic.add_argument("--num-leaves", type=int, default=spec.num_leaves)
    synthetic.add_argument("--rows", type=int, default=spec.n_rows, help="training rows")
    synthetic.add_argument("--seed", type=int, default=spec.seed)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "build" and args.codegen not in CODEGENS:  # a bad environment default
        parser.error(f"--codegen must be one of {', '.join(CODEGENS)}, got {args.codegen!r}")
    if args.command == "build" and args.target not in TARGETS:
        parser.error(f"--target must be one of {', '.join(TARGETS)}, got {args.target!r}")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "build":
            options = BuildOptions(
                codegen=args.codegen,
                block_rows=args.block_rows,
                target=args.target,
                quantize=args.quantize,
                annotate=args.annotate,
                parallel_comp=args.parallel_comp,
                cc=args.cc,
                opt_level=args.opt_level,
                jobs=args.jobs,
                cache_dir=None if args.no_cache else args.cache_dir,
            )
            key = signing_key_for(args.bundle_key_file, f"bundle {args.bundle}")
            build_bundle(args.bundle, options, key)
        elif args.command == "bench":
            options_bench = BenchOptions(
                batch_sizes=args.batch_sizes,
                repeats=args.repeats,
                pool_rows=args.pool_rows,
                seed=args.seed,
                variants=args.variants,
                serving_shape=args.serving_shape,
                other_codegens=args.other_codegens,
            )
            print(run_bench(args.bundle, options_bench))
        elif args.command == "request-bench":
            options_request = RequestBenchOptions(
                batch_sizes=args.batch_sizes,
                rounds=args.rounds,
                seed=args.seed,
                callgrind=args.callgrind,
            )
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
