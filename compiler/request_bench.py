"""`compiler request-bench`: what one request's rows and scores cost, numpy builder vs native.

Every path scores the same kind of request (one session, `batch` catalog candidates), each call
a fresh one: session inputs resampled column by column from the bundle's training rows, random
candidates. Rounds are interleaved across paths in a fresh random order; cells are medians of
the rounds' medians. Beside the wall times (through Python, as a server would call them, and of
the C alone through compiler/request_driver.c), callgrind counts the C instructions per request,
which are stable on a shared, noisy machine where wall times are not.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from compiler.toolchain import find_cc
from reco import (
    FEATURE_NAMES,
    KERNELS,
    LIBRARY_FILE,
    MODES,
    REQUEST_KERNEL_HEADER,
    SESSION_FEATURES,
    SESSION_INPUTS,
    TRAIN_SAMPLE_FILE,
    CandidateInputs,
    Encodings,
    ProductTables,
    RequestKernel,
    SessionInputs,
    build_features,
    cpu_flags,
    cpu_model,
    load_backend,
    load_tables,
    probe_from_manifest,
    read_manifest,
    session_feature_columns,
)

DRIVER_SOURCE = Path(__file__).with_name("request_driver.c")
VALGRIND_ENV = "RECO_REQUIRE_VALGRIND"
# The training rows' first ten columns are the session inputs, in SESSION_INPUTS' order.
RAW_COLUMNS = SESSION_FEATURES[: len(SESSION_INPUTS)]
_SESSION_FIELDS = [f.name for f in fields(SessionInputs)][: len(SESSION_INPUTS)]

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


class RequestBenchError(Exception):
    """The request benchmark cannot run on this bundle or machine; says why."""


@dataclass(frozen=True)
class RequestBenchOptions:
    """What to measure; calls per round scale down with the batch (rows_per_round / batch)."""

    batch_sizes: tuple[int, ...] = (1, 10, 100, 200)
    rounds: int = 9
    rows_per_round: int = 4000
    max_calls_per_round: int = 300
    seed: int = 0
    callgrind: bool = True
    callgrind_requests: int = 200


@dataclass(frozen=True)
class Request:
    """One request: session inputs, current and previous product indices, candidates."""

    inputs: tuple[float, ...]
    current: int
    previous: tuple[int, int, int]
    candidates: I64


@dataclass(frozen=True)
class ScoringPath:
    """A way to score a request: its table label, the Python call, and how the C driver runs
    its C part (entry, mode, kernel; None when it has none of ours)."""

    label: str
    score: Callable[[Request], Any]
    driver: tuple[str, int, int] | None


class RequestPool:
    """Fresh requests from a bundle: session inputs resampled column by column from its rows,
    current/previous products random (one in eight none), candidates random catalog products."""

    def __init__(self, sessions: npt.NDArray[np.float64], n_products: int, seed: int) -> None:
        self.sessions = sessions
        self.n_products = n_products
        self.rng = np.random.default_rng(seed)

    def draw(self, batch: int) -> Request:
        """One new request of batch candidates."""
        rng = self.rng
        row = rng.integers(0, len(self.sessions), len(RAW_COLUMNS))
        inputs = tuple(self.sessions[row, np.arange(len(RAW_COLUMNS))].tolist())
        context = [
            int(i) if rng.random() >= 0.125 else -1 for i in rng.integers(0, self.n_products, 4)
        ]
        candidates = rng.integers(0, self.n_products, batch).astype(np.int64)
        return Request(inputs, context[0], (context[1], context[2], context[3]), candidates)


def _numpy_path(
    model_tables: ProductTables, codes: F32, prices: F32, predict: Callable[[F32], Any]
) -> Callable[[Request], Any]:
    """What the server does today after its string lookups: SessionInputs with float32-rounded
    inputs, the candidates' codes and prices gathered, the numpy builder, the model call."""

    def score(r: Request) -> Any:
        rounded = np.array(r.inputs, dtype=np.float32).astype(np.float64).tolist()
        session = SessionInputs(
            **dict(zip(_SESSION_FIELDS, rounded, strict=True)),
            current_index=r.current,
            previous_index=np.array(r.previous, dtype=np.int64),
        )
        candidates = CandidateInputs(codes[r.candidates], prices[r.candidates], r.candidates)
        return predict(build_features(session, candidates, model_tables))

    return score


def _native_path(kernel: RequestKernel, mode: str) -> Callable[[Request], Any]:
    def score(r: Request) -> Any:
        return kernel.score(r.inputs, r.current, r.previous, r.candidates, mode=mode)

    return score


def build_paths(bundle_dir: Path) -> tuple[list[ScoringPath], RequestPool, dict[str, Any]]:
    """The paths to compare on this bundle, a request pool, and what the header reports."""
    manifest = read_manifest(bundle_dir)
    if tuple(manifest["feature_names"]) != FEATURE_NAMES:
        raise RequestBenchError(f"{bundle_dir} is not trained on the candidate feature set")
    catalog, tables = load_tables(bundle_dir)
    encodings = Encodings.from_manifest(manifest["encodings"])
    codes = np.append(encodings.category.encode(catalog.categories), np.nan).astype(np.float32)
    prices = np.append(catalog.prices, np.nan).astype(np.float32)
    library = bundle_dir / LIBRARY_FILE
    backend = load_backend(bundle_dir, "compiled")
    kernels = {
        name: RequestKernel(
            library,
            feature_names=FEATURE_NAMES,
            category_codes=codes,
            prices=prices,
            popularity=tables.popularity,
            affinity=tables.affinity,
            kernel=name,
        )
        for name in RequestKernel.for_rows(library, FEATURE_NAMES).usable_kernels
    }
    probe_rows, probe_expected = probe_from_manifest(manifest)
    auto = kernels["avx2" if "avx2" in kernels and "avx2" in (cpu_flags() or ()) else "portable"]
    parity = max(k.check_parity(probe_rows, probe_expected) for k in kernels.values())
    paths = [
        ScoringPath(
            "(a) numpy builder + flat library",
            _numpy_path(tables, codes, prices, backend.predict),
            ("dense", 0, 0),
        ),
        ScoringPath(
            "(b) native rows + flat walk", _native_path(auto, "flat"), ("score", MODES["flat"], 0)
        ),
    ]
    paths += [
        ScoringPath(
            f"(c) native rows + folded session, {name}",
            _native_path(k, "fold"),
            ("score", MODES["fold"], KERNELS[name]),
        )
        for name, k in kernels.items()
    ]
    paths.append(
        ScoringPath(
            f"(d) native, auto ({auto.kernel})",
            _native_path(auto, "auto"),
            ("score", MODES["auto"], KERNELS[auto.kernel]),
        )
    )
    sample = np.load(bundle_dir / TRAIN_SAMPLE_FILE, allow_pickle=False)
    sessions = sample[:, [FEATURE_NAMES.index(c) for c in RAW_COLUMNS]].astype(np.float64)
    info = {
        "version": manifest["version"],
        "trees": manifest.get("compiler", {}).get("codegen", {}).get("reason", ""),
        "parity": parity,
        "probe_rows": len(probe_rows),
        "library": library,
        "tables": (codes, prices, tables.popularity),
        "affinity": tables.affinity,
        "n_products": len(catalog),
    }
    return paths, RequestPool(sessions, len(catalog), 0), info


def _calls(batch: int, options: RequestBenchOptions) -> int:
    return max(5, min(options.max_calls_per_round, options.rows_per_round // batch))


@dataclass(frozen=True)
class Timing:
    """One path at one batch size: the median of the rounds' medians, and the tail over every
    call timed (microseconds per request)."""

    median: float
    p99: float
    max: float


def measure_python(
    paths: list[ScoringPath], pool: RequestPool, options: RequestBenchOptions
) -> dict[tuple[str, int], Timing]:
    """Each path at each batch size, every call a fresh request, rounds interleaved."""
    rng = np.random.default_rng(options.seed)
    medians: dict[tuple[str, int], list[float]] = {}
    every: dict[tuple[str, int], list[float]] = {}
    for _ in range(options.rounds):
        for batch in options.batch_sizes:
            for i in rng.permutation(len(paths)).tolist():
                path = paths[i]
                requests = [pool.draw(batch) for _ in range(_calls(batch, options))]
                timings = []
                for request in requests:
                    began = time.perf_counter_ns()
                    path.score(request)
                    timings.append((time.perf_counter_ns() - began) / 1e3)
                medians.setdefault((path.label, batch), []).append(statistics.median(timings))
                every.setdefault((path.label, batch), []).extend(timings)
    return {
        key: Timing(
            statistics.median(values),
            float(np.percentile(every[key], 99)),
            max(every[key]),
        )
        for key, values in medians.items()
    }


class Driver:
    """compiler/request_driver.c compiled here, with the bundle's tables and sessions."""

    def __init__(self, work: Path, info: dict[str, Any], pool: RequestPool) -> None:
        cc = find_cc("gcc")
        if cc is None:
            raise RequestBenchError("gcc not found: the C driver cannot be built")
        self.binary = work / "request_driver"
        subprocess.run(
            [
                cc,
                "-O2",
                f"-I{DRIVER_SOURCE.parent}",
                f"-I{REQUEST_KERNEL_HEADER.parent}",
                str(DRIVER_SOURCE),
                "-ldl",
                "-o",
                str(self.binary),
            ],
            check=True,
        )
        self.data = work / "requests.bin"
        with self.data.open("wb") as out:
            affinity = info["affinity"]
            head = [info["n_products"], len(pool.sessions), len(affinity)]
            out.write(np.array(head, dtype=np.int64).tobytes())
            for table in info["tables"]:
                out.write(np.ascontiguousarray(table, dtype=np.float32).tobytes())
            out.write(np.ascontiguousarray(affinity.indptr, dtype=np.int64).tobytes())
            out.write(np.ascontiguousarray(affinity.related, dtype=np.int32).tobytes())
            out.write(np.ascontiguousarray(affinity.strength, dtype=np.float32).tobytes())
            out.write(np.ascontiguousarray(pool.sessions, dtype=np.float64).tobytes())
        self.library = info["library"]

    def args(self, how: tuple[str, int, int], batch: int, requests: int) -> list[str]:
        entry, mode, kernel = how
        return [
            str(self.binary),
            str(self.library),
            str(self.data),
            entry,
            str(mode),
            str(kernel),
            str(batch),
            str(requests),
        ]

    def nanoseconds(self, how: tuple[str, int, int], batch: int, requests: int) -> float:
        """The median wall time of one request, C only."""
        done = subprocess.run(
            self.args(how, batch, requests), capture_output=True, text=True, check=True
        )
        return float(done.stdout.strip())

    def instructions(
        self, how: tuple[str, int, int], batch: int, requests: int, function: str
    ) -> float:
        """Instructions per request inside `function` (and what it calls), by callgrind."""
        with tempfile.TemporaryDirectory(prefix="reco-callgrind-") as tmp:
            done = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={tmp}/out",
                    f"--toggle-collect={function}",
                    *self.args(how, batch, requests),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RequestBenchError(f"callgrind reported no count: {done.stderr[-500:]}")
        return int(found.group(1)) / requests


def measure_c(
    paths: list[ScoringPath], driver: Driver, options: RequestBenchOptions
) -> dict[tuple[str, int], float]:
    """Median microseconds per request of each path's C part, rounds interleaved."""
    rng = np.random.default_rng(options.seed + 1)
    medians: dict[tuple[str, int], list[float]] = {}
    for _ in range(max(3, options.rounds // 3)):
        for batch in options.batch_sizes:
            for i in rng.permutation(len(paths)).tolist():
                path = paths[i]
                if path.driver is not None:
                    ns = driver.nanoseconds(path.driver, batch, 20 * _calls(batch, options))
                    medians.setdefault((path.label, batch), []).append(ns / 1e3)
    return {key: statistics.median(values) for key, values in medians.items()}


def valgrind_available() -> bool:
    """valgrind is on PATH; RequestBenchError when it is not but RECO_REQUIRE_VALGRIND is set."""
    if shutil.which("valgrind"):
        return True
    if os.environ.get(VALGRIND_ENV):
        raise RequestBenchError(f"valgrind not found, and {VALGRIND_ENV} requires it")
    return False


def count_instructions(
    paths: list[ScoringPath], driver: Driver, options: RequestBenchOptions
) -> tuple[dict[tuple[str, int], float], dict[str, float]]:
    """Instructions per request of each path's C entry point, and of each kernel's fold."""
    counts = {}
    for path in paths:
        if path.driver is None:
            continue
        function = "reco_predict_dense" if path.driver[0] == "dense" else "reco_request_score"
        for batch in options.batch_sizes:
            counts[(path.label, batch)] = driver.instructions(
                path.driver, batch, options.callgrind_requests, function
            )
    folds = {
        name: driver.instructions(
            ("score", MODES["fold"], number), 1, options.callgrind_requests, f"fold_{name}"
        )
        for name, number in KERNELS.items()
        if any(p.driver == ("score", MODES["fold"], number) for p in paths)
    }
    return counts, folds


def python_session_columns_us() -> float:
    """Microseconds training.features spends on one context's 19 session columns in Python
    (what passing session columns instead of the raw inputs would leave in Python)."""
    session = SessionInputs(
        1.0, 50.0, 1.0, 0.0, 1.0, 45.0, 0.5, 1.0, 5.0, 2.0, 3, np.array([1, 2, -1])
    )
    number = 2000
    return (
        min(timeit.repeat(lambda: session_feature_columns(session), number=number, repeat=5))
        / number
        * 1e6
    )


def _machine() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{cpu_model()}, {os.cpu_count()} CPUs, load average {load}"


def markdown(
    paths: list[ScoringPath],
    options: RequestBenchOptions,
    python_us: dict[tuple[str, int], Timing],
    c_us: dict[tuple[str, int], float],
    counts: dict[tuple[str, int], float],
) -> str:
    """The table: per request and per row, through Python and C only, with instruction counts."""
    lines = [
        "| path | batch | us/request | us/row | vs (a) | p99 / max us | C only: us/request "
        "| us/row | C instructions/request | /row |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    baseline = paths[0].label
    for batch in options.batch_sizes:
        for path in paths:
            key = (path.label, batch)
            timing = python_us[key]
            ratio = python_us[(baseline, batch)].median / timing.median
            c = f"{c_us[key]:.2f} | {c_us[key] / batch:.3f}" if key in c_us else "- | -"
            count = f"{counts[key]:,.0f} | {counts[key] / batch:,.0f}" if key in counts else "- | -"
            lines.append(
                f"| {path.label} | {batch} | {timing.median:.2f} | {timing.median / batch:.3f} "
                f"| {ratio:.2f}x | {timing.p99:.1f} / {timing.max:.0f} | {c} | {count} |"
            )
    return "\n".join(lines)


def run_request_bench(bundle_dir: Path, options: RequestBenchOptions) -> str:
    """Benchmarks every path on the bundle; returns Markdown."""
    paths, pool, info = build_paths(bundle_dir)
    before = _machine()
    callgrind = options.callgrind and valgrind_available()
    with tempfile.TemporaryDirectory(prefix="reco-request-bench-") as tmp:
        driver = Driver(Path(tmp), info, pool)
        python_us = measure_python(paths, pool, options)
        c_us = measure_c(paths, driver, options)
        counts, folds = count_instructions(paths, driver, options) if callgrind else ({}, {})
    after = _machine()
    header = [
        f"`python -m compiler request-bench {bundle_dir}`: bundle {info['version']} "
        f"({info['trees']}).",
        f"Machine before: {before}. After: {after}.",
        f"Load-time parity (check_parity on the manifest's {info['probe_rows']} probe rows, "
        f"every mode and kernel): max abs diff {info['parity']:.1e}.",
        "Python computing the 19 session columns itself (training.features."
        f"session_feature_columns): {python_session_columns_us():.2f} us per request; the "
        "native paths take the 10 raw inputs and compute the columns in C.",
        f"Medians over {options.rounds} interleaved rounds of fresh requests (C only: "
        f"{max(3, options.rounds // 3)} rounds); instructions: callgrind over "
        f"{options.callgrind_requests} requests"
        + ("." if callgrind else " (not measured: valgrind not found)."),
    ]
    header += [
        f"The {name} fold alone: {count:,.0f} instructions per request."
        for name, count in folds.items()
    ]
    return "\n".join(header) + "\n\n" + markdown(paths, options, python_us, c_us, counts)
