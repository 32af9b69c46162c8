"""Command-line settings of `python -m loadtest`: flags, environment fallbacks, validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import reco.settings as flags
from loadtest import slo
from loadtest.capacity import SearchPlan
from loadtest.compare import Contender
from loadtest.generator import DEFAULT_MAX_CPU, DEFAULT_MAX_SEND_LAG_MS, Saturation
from loadtest.schedule import ARRIVALS, RateSchedule
from loadtest.server_process import DEFAULT_SERVER_COMMAND, SERVER_COMMAND_ENV, ServerSpec
from loadtest.workload import KINDS, Mix

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


def _rate_pair(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(start), float(end)
    except ValueError:
        raise ValueError("must look like FROM:TO in requests/s (e.g. 100:2000)") from None


def _optional_bound(text: str) -> float | None:
    """A bound in the SLO flags; "off" disables it."""
    if text.strip().lower() in {"off", "none", ""}:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError("must be a flags.number, or off") from None


def build_parser() -> flags.SettingsParser:
    """The flags (RECO_LOADTEST_<FLAG> fallbacks; defaults shown in --help)."""
    p = flags.SettingsParser(
        "python -m loadtest",
        "Open-loop gRPC load generator for the reco.v1.Recommender server: fixed arrival rate (or "
        "ramp), latency from the intended send time, SLO verdict (exit 0 PASS, 1 FAIL, 2 could "
        "not run), capacity search and comparison mode.",
        env_prefix="RECO_LOADTEST_",
    )
    # target
    p.add("--target", str, DEFAULT_TARGET, "host:port of a running server")
    p.add(
        "--start-server",
        flags.boolean,
        "false",
        "start the server on a free port with --bundle, wait for SERVING, stop it after",
    )
    p.add(
        "--bundle",
        flags.required_path,
        str(DEFAULT_BUNDLE),
        "model bundle for a server started here",
    )
    p.add("--backend", flags.choice(*BACKENDS), "auto", "--backend for a server started here")
    p.add(
        "--server-cmd",
        str,
        DEFAULT_SERVER_COMMAND,
        "command that starts a server; --bundle/--host/--port/--metrics-port/--backend are "
        "appended",
        env=SERVER_COMMAND_ENV,
    )
    p.add(
        "--server-ready-timeout",
        flags.number(positive=True),
        "180",
        "seconds to wait for a started server to report SERVING",
    )
    p.add(
        "--ready-timeout",
        flags.number(positive=True),
        "10",
        "seconds to wait for an already running --target to report SERVING",
    )
    # load
    p.add("--rate", flags.number(positive=True), "200", "arrival rate, requests/s over all workers")
    p.add(
        "--ramp",
        flags.optional(_rate_pair),
        "",
        "ramp the rate linearly from FROM to TO over --duration instead (warm-up runs at FROM)",
        metavar="FROM:TO",
    )
    p.add("--arrival", flags.choice(*ARRIVALS), "constant", "arrival process")
    p.add(
        "--duration", flags.number(positive=True), "20", "measured seconds (per step in --capacity)"
    )
    p.add("--warmup", flags.number(0), "3", "seconds sent first and excluded from results")
    p.add("--scenario", str, "score", f"request mix, kind=weight,... with kinds {', '.join(KINDS)}")
    p.add("--candidates", flags.integer(1), "100", "candidates per Score request")
    p.add(
        "--catalog",
        flags.optional_path,
        "",
        "catalog CSV with a product_id column (default: <bundle>/catalog.csv, else "
        "PROD0001..PROD0200)",
    )
    p.add(
        "--concurrency",
        flags.integer(1),
        "256",
        "in-flight cap over all workers; a request due beyond it is counted as DROPPED",
    )
    p.add("--workers", flags.integer(1), "1", "generator processes, each with its own event loop")
    p.add("--channels", flags.integer(1), "1", "gRPC channels per worker")
    p.add("--timeout", flags.number(positive=True), "1", "per-request deadline, seconds")
    p.add("--seed", flags.integer(), "7", "seed for requests and arrivals")
    # SLO verdict ('off' disables a bound)
    p.add(
        "--slo-p99-per-prediction-ms",
        _optional_bound,
        f"{slo.DEFAULT_P99_PER_PREDICTION_MS:g}",
        "p99 of request latency / candidates must be under this ('off' disables it)",
    )
    p.add(
        "--slo-p99-request-ms",
        _optional_bound,
        f"{slo.DEFAULT_P99_REQUEST_MS:g}",
        "p99 request latency must be under this ('off' disables it)",
    )
    p.add(
        "--slo-max-error-rate",
        _optional_bound,
        f"{slo.DEFAULT_MAX_ERROR_RATE:g}",
        "share of scheduled requests without an OK answer (drops count) must be at most this "
        "('off' disables it)",
    )
    p.add(
        "--max-client-cpu",
        flags.number(0),
        f"{DEFAULT_MAX_CPU:g}",
        "warn (generator saturated) above this share of a core per worker",
    )
    p.add(
        "--max-send-lag-ms",
        flags.number(0),
        f"{DEFAULT_MAX_SEND_LAG_MS:g}",
        "generator behind schedule (saturated) when the median send lag exceeds this; a "
        "warning when only the p99 does",
    )
    # capacity search
    p.add("--capacity", flags.boolean, "false", "step the rate up until the SLO breaks")
    p.add("--capacity-start", flags.number(positive=True), "100", "first rate, requests/s")
    p.add("--capacity-step", flags.number(positive=True), "100", "rate increment")
    p.add("--capacity-max", flags.number(positive=True), "5000", "highest rate to try")
    p.add(
        "--capacity-bisect",
        flags.integer(0),
        "2",
        "midpoints tried between the last rate that held and the first that broke",
    )
    p.add(
        "--capacity-confirm",
        flags.integer(0),
        "0",
        "re-run a breaking rate this many times; it breaks only if every try does (for "
        "noisy machines)",
    )
    # comparison
    p.add(
        "--compare",
        str,
        "",
        "run the same scenario against each target; ratios against the first",
        metavar="[LABEL=]HOST:PORT",
        nargs="+",
    )
    p.add(
        "--compare-backends",
        str,
        "",
        f"start one server per backend ({', '.join(BACKENDS[1:])}) with --bundle and compare them",
        metavar="B1,B2,...",
    )
    p.add(
        "--rounds",
        flags.integer(1),
        "1",
        "alternate the contenders this many times; medians over the rounds",
    )
    # output
    p.add(
        "--results-dir",
        flags.optional_path,
        "",
        f"where result.json, summary.md and the PNGs go (unset: {DEFAULT_RESULTS_ROOT}/<UTC "
        "time>-<mode>)",
    )
    p.add("--no-progress", flags.boolean, "false", "no progress line")
    p.add("--verbose", flags.boolean, "false", "debug logging", short="-v")
    return p


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Settings, bool]:
    """Parses and validates the command line; returns the settings and the verbose flag.
    Raises flags.SettingError (one line naming the flag) for a bad value or combination."""
    args = SimpleNamespace(**build_parser().parse(argv, environ))
    try:
        settings = _settings(args)
    except ValueError as exc:
        raise flags.SettingError(str(exc)) from None
    return settings, bool(args.verbose)


def _settings(args: SimpleNamespace) -> Settings:
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
