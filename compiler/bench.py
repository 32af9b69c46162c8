"""`compiler bench`: latency of every backend per call and per row on fresh rows, as Markdown."""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import tl2cgen

from compiler.backends import BACKEND_KINDS, Backend, BackendError, load_backend
from compiler.build import (
    TRAIN_SAMPLE_FILE,
    BuildOptions,
    compile_library,
)
from compiler.check_rows import parity_check_rows
from compiler.cpu import cpu_model
from compiler.native import NativeLibrary
from compiler.parity import GroupedCheck
from compiler.toolchain import find_cc
from training.bundle import LIBRARY_FILE, MODEL_FILE, probe_from_manifest, read_manifest
from training.features import SESSION_FEATURES

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
Predict = Callable[[F32], Any]
REFERENCE = "lightgbm"


class BenchError(Exception):
    """The benchmark cannot run as asked (e.g. a variant fails parity)."""


@dataclass(frozen=True)
class BenchOptions:
    """What to measure; calls_per_run scales down with the batch size (rows_per_run / batch)."""

    batch_sizes: tuple[int, ...] = (1, 10, 100, 1000)
    repeats: int = 15
    rows_per_run: int = 2000
    max_calls_per_run: int = 200
    pool_rows: int = 200_000
    seed: int = 0
    variants: bool = False
    serving_shape: bool = False


@dataclass(frozen=True)
class Measurement:
    """The median latency of one predictor at one batch size."""

    name: str
    batch: int
    us_per_call: float

    @property
    def us_per_row(self) -> float:
        """Latency divided by rows per call."""
        return self.us_per_call / self.batch


def fresh_row_pool(source: F32, n_rows: int, rng: np.random.Generator) -> F32:
    """Rows never seen in training: each column resampled independently from source rows, so
    combinations are new and no backend can benefit from having seen a row before."""
    columns = [source[rng.integers(0, len(source), n_rows), j] for j in range(source.shape[1])]
    return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)


def _calls_per_run(batch: int, options: BenchOptions) -> int:
    return max(3, min(options.max_calls_per_run, options.rows_per_run // batch))


def rows_needed(options: BenchOptions) -> int:
    """Rows one predictor scores over the whole benchmark (the pool must hold as many)."""
    return options.repeats * sum(_calls_per_run(b, options) * b for b in options.batch_sizes)


def measure(
    predictors: dict[str, Predict],
    pool: F32,
    options: BenchOptions,
    rng: np.random.Generator,
    session_columns: list[int] | None = None,
) -> list[Measurement]:
    """Times every predictor at every batch size.

    Runs are interleaved across predictors in a fresh random order each round, so machine noise
    lands on all of them. Each predictor walks its own cursor through the pool, so no call
    repeats a row that predictor has scored before; rows are copied into a reused buffer first,
    as a server's freshly built feature matrix would be in cache. With session_columns, every
    batch takes those columns from its first row: one session's context over many candidates.
    """
    if rows_needed(options) > len(pool):
        logger.warning(
            "pool of %d rows < %d rows per predictor: rows will repeat",
            len(pool),
            rows_needed(options),
        )
    cursors = dict.fromkeys(predictors, 0)
    run_medians: dict[tuple[str, int], list[float]] = {}
    buffers = {b: np.empty((b, pool.shape[1]), dtype=np.float32) for b in options.batch_sizes}
    for _ in range(options.repeats):
        for batch in options.batch_sizes:
            buffer = buffers[batch]
            for name in rng.permutation(list(predictors)).tolist():
                predict = predictors[name]
                timings = []
                for _call in range(_calls_per_run(batch, options)):
                    start = cursors[name]
                    if start + batch > len(pool):
                        start = 0
                    cursors[name] = start + batch
                    np.copyto(buffer, pool[start : start + batch])
                    if session_columns:
                        buffer[:, session_columns] = buffer[0, session_columns]
                    began = time.perf_counter_ns()
                    predict(buffer)
                    timings.append(time.perf_counter_ns() - began)
                run_medians.setdefault((name, batch), []).append(statistics.median(timings))
    return [
        Measurement(name, batch, statistics.median(values) / 1000.0)
        for (name, batch), values in run_medians.items()
    ]


def markdown_table(measurements: list[Measurement], order: Sequence[str]) -> str:
    """One row per (predictor, batch), with the per-row speed-up over LightGBM's predict."""
    by_key = {(m.name, m.batch): m for m in measurements}
    lines = [
        "| backend | batch | us/call | us/row | per-row speed-up vs lightgbm |",
        "|---|---:|---:|---:|---:|",
    ]
    for batch in sorted({m.batch for m in measurements}):
        reference = by_key.get((REFERENCE, batch))
        for name in order:
            m = by_key.get((name, batch))
            if m is None:
                continue
            ratio = f"{reference.us_per_row / m.us_per_row:.1f}x" if reference else "-"
            lines.append(
                f"| {name} | {batch} | {m.us_per_call:.1f} | {m.us_per_row:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def _tl2cgen_predictor(library: Path) -> Predict:
    predictor = tl2cgen.Predictor(library, nthread=1)

    def predict(rows: F32) -> Any:
        return predictor.predict(tl2cgen.DMatrix(rows, dtype="float32", missing=np.nan))

    return predict


_VARIANTS: dict[str, dict[str, Any]] = {
    "default (portable -O3, annotated, quantized)": {},
    "no quantize": {"quantize": False},
    "no annotation": {"annotate": False},
    "-O2": {"opt_level": "O2"},
    "native": {"target": "native"},
}


def _variant_predictors(
    bundle_dir: Path, work: Path, base: BuildOptions, sample: F32 | None, probe_rows: F32
) -> dict[str, Predict]:
    """Builds each compile variant into work, checks its parity, returns their predictors."""
    cc_path = find_cc(base.cc)
    if cc_path is None:
        raise BenchError(f"C compiler {base.cc!r} not found: cannot build variants")
    booster = lgb.Booster(model_file=str(bundle_dir / MODEL_FILE))
    names = read_manifest(bundle_dir)["feature_names"]
    check = GroupedCheck(
        parity_check_rows(probe_rows, sample, booster.dump_model()), booster.predict, names
    )
    annotation_rows = probe_rows if sample is None else sample
    predictors: dict[str, Predict] = {}
    for label, changes in _VARIANTS.items():
        options = dataclasses.replace(base, **changes)
        started = time.perf_counter()
        path = compile_library(
            bundle_dir / MODEL_FILE,
            work / f"variant{len(predictors)}",
            options,
            annotation_rows,
            cc_path,
        )
        library = NativeLibrary(path)
        record, message = check.run("compiled", library.predict_unchecked)
        if message:
            raise BenchError(f"variant {label!r}: {message}")
        print(
            f"- {label}: built in {time.perf_counter() - started:.1f}s, max abs diff "
            f"{record['max_abs_diff']:.1e} over {record['rows_checked']} rows"
        )
        # Through Backend.predict, like the bundle's backend, so the rows compare like for like.
        variant = Backend("compiled", library.n_features, library.predict_unchecked)
        predictors[f"compiled [{label}]"] = variant.predict
    return predictors


def _bundle_predictors(bundle_dir: Path) -> tuple[dict[str, Predict], list[str]]:
    """Every backend the bundle can load, TL2cgen's Predictor on its library, and the reasons
    for any left out. LightGBM, the reference, must load."""
    predictors: dict[str, Predict] = {}
    unavailable = []
    for kind in BACKEND_KINDS:
        try:
            predictors[kind] = load_backend(bundle_dir, kind).predict
        except BackendError as exc:
            if kind == REFERENCE:
                raise
            unavailable.append(str(exc))
    if "compiled" in predictors:
        predictors["tl2cgen Predictor"] = _tl2cgen_predictor(bundle_dir / LIBRARY_FILE)
    return predictors, unavailable


def _session_columns(manifest: dict[str, Any]) -> list[int]:
    """Columns of the manifest's feature order that describe the session, not the candidate."""
    columns = [i for i, name in enumerate(manifest["feature_names"]) if name in SESSION_FEATURES]
    if not columns or len(columns) == len(manifest["feature_names"]):
        raise BenchError(
            "--serving-shape needs a bundle whose features mix session and candidate columns"
        )
    return columns


def _machine_state() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{cpu_model()}, {os.cpu_count()} CPUs, load average {load}"


def run_bench(bundle_dir: Path, options: BenchOptions) -> str:
    """Benchmarks the bundle's backends (and, with variants, compile variants); returns Markdown."""
    manifest = read_manifest(bundle_dir)
    probe_rows, _ = probe_from_manifest(manifest)
    sample_path = bundle_dir / TRAIN_SAMPLE_FILE
    sample = np.load(sample_path, allow_pickle=False) if sample_path.is_file() else None
    source = probe_rows if sample is None else sample
    rng = np.random.default_rng(options.seed)
    pool = fresh_row_pool(source, options.pool_rows, rng)
    predictors, unavailable = _bundle_predictors(bundle_dir)
    section = manifest.get("compiler", {})
    flags = section.get("flags", {})
    header = [
        f"`python -m compiler bench {bundle_dir}`: bundle {manifest['version']} "
        f"({len(manifest['feature_names'])} features), library built with "
        f"`{' '.join(flags.get('cflags', []))}`, quantize {flags.get('quantize')}, "
        f"annotated {section.get('annotation', {}).get('enabled')}.",
        f"Machine before: {_machine_state()}.",
        *[f"Not measured: {reason}." for reason in unavailable],
    ]
    with tempfile.TemporaryDirectory(prefix="reco-bench-") as tmp:
        if options.variants:
            base = BuildOptions(
                cc=flags.get("cc", "gcc"), parallel_comp=int(flags.get("parallel_comp", 0))
            )
            print("Compile variants (each checked against LightGBM before timing):")
            predictors.update(_variant_predictors(bundle_dir, Path(tmp), base, sample, probe_rows))
        session_columns = _session_columns(manifest) if options.serving_shape else None
        measurements = measure(predictors, pool, options, rng, session_columns)
    header.append(
        f"Machine after: {_machine_state()}. Medians of {options.repeats} runs per cell, runs "
        f"interleaved across backends; every call scores fresh rows (columns resampled "
        f"independently from {len(source)} {'probe' if sample is None else 'training'} rows)"
        + (
            f", the {len(session_columns)} session columns shared by all rows of a batch."
            if session_columns
            else "."
        )
    )
    return "\n".join(header) + "\n\n" + markdown_table(measurements, list(predictors))
