"""Command-line settings of `python -m loadtest`: flags, environment fallbacks, validation."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from loadtest import slo
from loadtest.capacity import SearchPlan
from loadtest.compare import Contender
from loadtest.generator import DEFAULT_MAX_CPU, DEFAULT_MAX_SEND_LAG_MS, Saturation
from loadtest.schedule import ARRIVALS, RateSchedule
from loadtest.server_process import SERVER_COMMAND_ENV, ServerSpec, default_server_command
from loadtest.workload import KINDS, Mix

T = TypeVar("T")

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_BUNDLE = Path("artifacts/latest")
DEFAULT_RESULTS_ROOT = Path("reports/loadtest")
BACKENDS = ("auto", "compiled", "onnx", "lightgbm")


@dataclass(frozen=True)
class Settings:
    """Everything one invocation needs, validated."""

    target: str
    ready_timeout_s: float
    start_server: bool
    server: ServerSpec
    schedule: RateSchedule
    mix: Mix
    candidates: int
    concurrency: int
    workers: int
    channels: int
    timeout_s: float
    seed: int
    catalog: Path
    catalog_required: bool
    slo: slo.SloConfig
    limits: Saturation
    results_dir: Path
    progress: bool
    capacity: SearchPlan | None
    compare_targets: tuple[Contender, ...]
    compare_backends: tuple[str, ...]
    rounds: int

    @property
    def mode(self) -> str:
        """run, capacity or compare."""
        return _mode(bool(self.compare_targets or self.compare_backends), self.capacity is not None)


def _mode(comparing: bool, searching_capacity: bool) -> str:
    if comparing:
        return "compare"
    return "capacity" if searching_capacity else "run"


def _env(name: str, default: T, convert: Callable[[str], T]) -> T:
    """The environment variable converted, else the default; a bad value names the variable."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name}={raw!r} is not a valid value") from None


def _rate_pair(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(start), float(end)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ramp must look like FROM:TO in requests/s (e.g. 100:2000), got {text!r}"
        ) from None


def _optional_bound(text: str) -> float | None:
    """A bound in the SLO flags; "off" disables it."""
    if text.strip().lower() in {"off", "none", ""}:
        return None
    return float(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (defaults shown in --help; env fallbacks named in each help)."""
    p = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=(
            "Open-loop gRPC load generator for the reco.v1.Recommender server: fixed arrival "
            "rate (or ramp), latency from the intended send time, SLO verdict (exit 0 PASS, "
            "1 FAIL, 2 could not run), capacity search and comparison mode."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    target = p.add_argument_group("target")
    target.add_argument(
        "--target",
        default=_env("LOADTEST_TARGET", DEFAULT_TARGET, str),
        help="host:port of a running server (env LOADTEST_TARGET)",
    )
    target.add_argument(
        "--start-server",
        action="store_true",
        help="start the server on a free port with --bundle, wait for SERVING, stop it after",
    )
    target.add_argument(
        "--bundle",
        type=Path,
        default=_env("LOADTEST_BUNDLE", DEFAULT_BUNDLE, Path),
        help="model bundle for a server started here (env LOADTEST_BUNDLE)",
    )
    target.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="--backend for a server started here",
    )
    target.add_argument(
        "--server-cmd",
        default=default_server_command(),
        help=f"command that starts a server; --bundle/--host/--port/--metrics-port/--backend "
        f"are appended (env {SERVER_COMMAND_ENV})",
    )
    target.add_argument(
        "--server-ready-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for a started server to report SERVING",
    )
    target.add_argument(
        "--ready-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for an already running --target to report SERVING",
    )

    load = p.add_argument_group("load")
    rate = load.add_mutually_exclusive_group()
    rate.add_argument(
        "--rate",
        type=float,
        default=_env("LOADTEST_RATE", 200.0, float),
        help="arrival rate, requests/s over all workers (env LOADTEST_RATE)",
    )
    rate.add_argument(
        "--ramp",
        type=_rate_pair,
        metavar="FROM:TO",
        help="ramp the rate linearly over --duration instead (warm-up runs at FROM)",
    )
    load.add_argument("--arrival", choices=ARRIVALS, default="constant", help="arrival process")
    load.add_argument(
        "--duration",
        type=float,
        default=_env("LOADTEST_DURATION", 20.0, float),
        help="measured seconds (per step in --capacity) (env LOADTEST_DURATION)",
    )
    load.add_argument(
        "--warmup", type=float, default=3.0, help="seconds sent first and excluded from results"
    )
    load.add_argument(
        "--scenario",
        default=_env("LOADTEST_SCENARIO", "score", str),
        help=f"request mix, kind=weight,... with kinds {', '.join(KINDS)} (env LOADTEST_SCENARIO)",
    )
    load.add_argument(
        "--candidates",
        type=int,
        default=_env("LOADTEST_CANDIDATES", 100, int),
        help="candidates per Score request (env LOADTEST_CANDIDATES)",
    )
    load.add_argument(
        "--catalog",
        type=Path,
        help="catalog CSV with a product_id column (default: <bundle>/catalog.csv, else "
        "PROD0001..PROD0200)",
    )
    load.add_argument(
        "--concurrency",
        type=int,
        default=256,
        help="in-flight cap over all workers; a request due beyond it is counted as DROPPED",
    )
    load.add_argument(
        "--workers",
        type=int,
        default=_env("LOADTEST_WORKERS", 1, int),
        help="generator processes, each with its own event loop (env LOADTEST_WORKERS)",
    )
    load.add_argument("--channels", type=int, default=1, help="gRPC channels per worker")
    load.add_argument("--timeout", type=float, default=1.0, help="per-request deadline, seconds")
    load.add_argument("--seed", type=int, default=7, help="seed for requests and arrivals")

    verdict = p.add_argument_group("SLO verdict ('off' disables a bound)")
    verdict.add_argument(
        "--slo-p99-per-prediction-ms",
        type=_optional_bound,
        default=slo.DEFAULT_P99_PER_PREDICTION_MS,
        help="p99 of request latency / candidates must be under this",
    )
    verdict.add_argument(
        "--slo-p99-request-ms",
        type=_optional_bound,
        default=slo.DEFAULT_P99_REQUEST_MS,
        help="p99 request latency must be under this",
    )
    verdict.add_argument(
        "--slo-max-error-rate",
        type=_optional_bound,
        default=slo.DEFAULT_MAX_ERROR_RATE,
        help="share of scheduled requests without an OK answer (drops count) must be at most this",
    )
    verdict.add_argument(
        "--max-client-cpu",
        type=float,
        default=DEFAULT_MAX_CPU,
        help="warn (generator saturated) above this share of a core per worker",
    )
    verdict.add_argument(
        "--max-send-lag-ms",
        type=float,
        default=DEFAULT_MAX_SEND_LAG_MS,
        help="generator behind schedule (saturated) when the median send lag exceeds this; "
        "a warning when only the p99 does",
    )

    cap = p.add_argument_group("capacity search")
    cap.add_argument(
        "--capacity", action="store_true", help="step the rate up until the SLO breaks"
    )
    cap.add_argument("--capacity-start", type=float, default=100.0, help="first rate, requests/s")
    cap.add_argument("--capacity-step", type=float, default=100.0, help="rate increment")
    cap.add_argument("--capacity-max", type=float, default=5000.0, help="highest rate to try")
    cap.add_argument(
        "--capacity-bisect",
        type=int,
        default=2,
        help="midpoints tried between the last rate that held and the first that broke",
    )
    cap.add_argument(
        "--capacity-confirm",
        type=int,
        default=0,
        help="re-run a breaking rate this many times; it breaks only if every try does "
        "(for noisy machines)",
    )

    cmp = p.add_argument_group("comparison")
    cmp.add_argument(
        "--compare",
        nargs="+",
        metavar="[LABEL=]HOST:PORT",
        default=[],
        help="run the same scenario against each target; ratios against the first",
    )
    cmp.add_argument(
        "--compare-backends",
        metavar="B1,B2,...",
        help=f"start one server per backend ({', '.join(BACKENDS[1:])}) with --bundle and "
        "compare them",
    )
    cmp.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the contenders this many times; medians over the rounds",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--results-dir",
        type=Path,
        default=_env("LOADTEST_RESULTS_DIR", None, Path),
        help="where result.json, summary.md and the PNGs go (env LOADTEST_RESULTS_DIR; "
        f"default {DEFAULT_RESULTS_ROOT}/<UTC time>-<mode>)",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress line")
    out.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, bool]:
    """Parses and validates the command line; returns the settings and the verbose flag."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as exc:
        parser.error(str(exc))
    return settings, bool(args.verbose)


def _settings(args: argparse.Namespace) -> Settings:
    if args.ramp is not None:
        if args.capacity:
            raise ValueError("--ramp and --capacity cannot be combined (capacity steps the rate)")
        schedule = RateSchedule(
            args.ramp[0], args.ramp[1], args.duration, args.warmup, args.arrival
        )
    else:
        schedule = RateSchedule.constant(args.rate, args.duration, args.warmup, args.arrival)
    backends: tuple[str, ...] = ()
    if args.compare_backends:
        backends = tuple(b.strip() for b in args.compare_backends.split(",") if b.strip())
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown or len(backends) < 2:
            raise ValueError(
                f"--compare-backends needs two or more of {', '.join(BACKENDS)}, "
                f"got {args.compare_backends!r}"
            )
    contenders = tuple(Contender.parse(t) for t in args.compare)
    if contenders and backends:
        raise ValueError("use either --compare or --compare-backends, not both")
    if len(contenders) == 1:
        raise ValueError("--compare needs at least two targets")
    if len({c.label for c in contenders}) != len(contenders):
        raise ValueError("--compare labels must be distinct")
    if (contenders or backends) and args.capacity:
        raise ValueError("--capacity and a comparison cannot be combined in one run")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    capacity = (
        SearchPlan(
            args.capacity_start,
            args.capacity_step,
            args.capacity_max,
            bisect=args.capacity_bisect,
            confirm=args.capacity_confirm,
        )
        if args.capacity
        else None
    )
    mode = _mode(bool(contenders or backends), capacity is not None)
    results_dir = args.results_dir or DEFAULT_RESULTS_ROOT / (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{mode}"
    )
    return Settings(
        target=args.target,
        ready_timeout_s=args.ready_timeout,
        start_server=bool(args.start_server),
        server=ServerSpec(
            bundle=args.bundle,
            backend=args.backend,
            command=args.server_cmd,
            ready_timeout_s=args.server_ready_timeout,
        ),
        schedule=schedule,
        mix=Mix.parse(args.scenario),
        candidates=args.candidates,
        concurrency=args.concurrency,
        workers=args.workers,
        channels=args.channels,
        timeout_s=args.timeout,
        seed=args.seed,
        catalog=args.catalog if args.catalog is not None else args.bundle / "catalog.csv",
        catalog_required=args.catalog is not None,
        slo=slo.SloConfig(
            p99_per_prediction_ms=args.slo_p99_per_prediction_ms,
            p99_request_ms=args.slo_p99_request_ms,
            max_error_rate=args.slo_max_error_rate,
        ),
        limits=Saturation(max_cpu=args.max_client_cpu, max_send_lag_ms=args.max_send_lag_ms),
        results_dir=results_dir,
        progress=not args.no_progress,
        capacity=capacity,
        compare_targets=contenders,
        compare_backends=backends,
        rounds=args.rounds,
    )
