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

from compiler.build import (
    TRAIN_SAMPLE_FILE,
    BuildOptions,
    compile_library,
)
from compiler.check_rows import parity_check_rows
from compiler.codegen_choice import FLAT, TL2CGEN, choose_codegen
from compiler.flatgen import NotEligibleError
from compiler.toolchain import find_cc
from reco import (
    BACKEND_KINDS,
    LIBRARY_FILE,
    MODEL_FILE,
    SESSION_FEATURES,
    Backend,
    BackendError,
    GroupedCheck,
    NativeLibrary,
    cpu_model,
    load_backend,
    probe_from_manifest,
    read_manifest,
)

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
    other_codegens: bool = True


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


def compiled_label(codegen: str) -> str:
    """The table's name for a model library made by one code generator."""
    return f"compiled ({codegen})"


# Compile variants for --variants: BuildOptions changes from the defaults, per label.
_VARIANTS: dict[str, dict[str, Any]] = {
    "flat, 4 rows per block": {"codegen": FLAT, "block_rows": 4},
    "flat, 16 rows per block": {"codegen": FLAT, "block_rows": 16},
    "flat, -O2": {"codegen": FLAT, "opt_level": "O2"},
    "flat, native": {"codegen": FLAT, "target": "native"},
    "tl2cgen, no quantize": {"codegen": TL2CGEN, "quantize": False},
    "tl2cgen, no annotation": {"codegen": TL2CGEN, "annotate": False},
    "tl2cgen, -O2": {"codegen": TL2CGEN, "opt_level": "O2"},
    "tl2cgen, native": {"codegen": TL2CGEN, "target": "native"},
}


@dataclass
class _Built:
    """Libraries built for the benchmark: predictors and paths by label, why any was left out,
    and one line per build."""

    predictors: dict[str, Predict] = dataclasses.field(default_factory=dict)
    paths: dict[str, Path] = dataclasses.field(default_factory=dict)
    unavailable: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def _build_libraries(
    bundle_dir: Path,
    work: Path,
    base: BuildOptions,
    builds: dict[str, dict[str, Any]],
    sample: F32 | None,
    probe_rows: F32,
) -> _Built:
    """Builds each library into work and checks its parity like `compiler build` does. A model
    the flat generator cannot take, or a missing compiler, leaves a build out with the reason;
    a library that fails parity raises BenchError."""
    built = _Built()
    model_file = bundle_dir / MODEL_FILE
    cc_path = find_cc(base.cc)
    if cc_path is None:
        built.unavailable += [f"{label}: C compiler {base.cc!r} not found" for label in builds]
        return built
    flat_refusal = ""
    try:
        choose_codegen(model_file, FLAT)
    except NotEligibleError as exc:
        flat_refusal = str(exc)
    booster = lgb.Booster(model_file=str(model_file))
    names = read_manifest(bundle_dir)["feature_names"]
    check = GroupedCheck(
        parity_check_rows(probe_rows, sample, booster.dump_model()), booster.predict, names
    )
    for label, changes in builds.items():
        options = dataclasses.replace(base, **changes)
        if options.codegen == FLAT and flat_refusal:
            built.unavailable.append(f"{label}: {flat_refusal}")
            continue
        started = time.perf_counter()
        path = compile_library(
            model_file,
            work / f"build{len(built.paths)}",
            options,
            probe_rows if sample is None else sample,
            cc_path,
            options.codegen,
        )
        library = NativeLibrary(path)
        record, message = check.run("compiled", library.predict_unchecked)
        if message:
            raise BenchError(f"{label}: {message}")
        built.notes.append(
            f"{label}: built in {time.perf_counter() - started:.1f}s, max abs diff "
            f"{record['max_abs_diff']:.1e} over {record['rows_checked']} rows"
        )
        # Through Backend.predict, like the bundle's backend, so the rows compare like for like.
        built.predictors[label] = Backend(
            "compiled", library.n_features, library.predict_unchecked
        ).predict
        built.paths[label] = path
    return built


def bundle_codegen(manifest: dict[str, Any]) -> str:
    """The generator that made the bundle's model.so (bundles from before the flat generator
    record none: theirs is TL2cgen's)."""
    return str(manifest.get("compiler", {}).get("codegen", {}).get("used", TL2CGEN))


def _bundle_predictors(bundle_dir: Path, codegen: str) -> tuple[dict[str, Predict], list[str]]:
    """Every backend the bundle can load, and the reasons for any left out. LightGBM, the
    reference, must load."""
    predictors: dict[str, Predict] = {}
    unavailable = []
    for kind in BACKEND_KINDS:
        label = compiled_label(codegen) if kind == "compiled" else kind
        try:
            predictors[label] = load_backend(bundle_dir, kind).predict
        except BackendError as exc:
            if kind == REFERENCE:
                raise
            unavailable.append(str(exc))
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


def _table_position(name: str) -> int:
    return 0 if name.startswith("compiled (") else 2 if name.startswith("compiled [") else 1


def _builds_wanted(options: BenchOptions, bundle_has: str | None) -> dict[str, dict[str, Any]]:
    """The libraries to build for this run, by label: each generator's default library not in
    the bundle (with other_codegens), then the compile variants (with variants)."""
    builds = {
        compiled_label(codegen): {"codegen": codegen}
        for codegen in (FLAT, TL2CGEN)
        if options.other_codegens and codegen != bundle_has
    }
    if options.variants:
        builds.update({f"compiled [{label}]": changes for label, changes in _VARIANTS.items()})
    return builds


def run_bench(bundle_dir: Path, options: BenchOptions) -> str:
    """Benchmarks the bundle's backends, the other generator's library and (with variants)
    compile variants, built here and parity-checked first; returns Markdown."""
    manifest = read_manifest(bundle_dir)
    probe_rows, _ = probe_from_manifest(manifest)
    sample_path = bundle_dir / TRAIN_SAMPLE_FILE
    sample = np.load(sample_path, allow_pickle=False) if sample_path.is_file() else None
    source = probe_rows if sample is None else sample
    rng = np.random.default_rng(options.seed)
    pool = fresh_row_pool(source, options.pool_rows, rng)
    codegen = bundle_codegen(manifest)
    predictors, unavailable = _bundle_predictors(bundle_dir, codegen)
    bundle_has = codegen if compiled_label(codegen) in predictors else None
    section = manifest.get("compiler", {})
    flags = section.get("flags", {})
    library = (
        f"`model.so` made by the {codegen} generator, built with "
        f"`{' '.join(flags.get('cflags', []))}`"
        + (
            f", quantize {flags.get('quantize')}, annotated "
            f"{section.get('annotation', {}).get('enabled')}"
            if codegen == TL2CGEN
            else f", {flags.get('block_rows', '?')} rows per block"
        )
        if bundle_has
        else "no usable `model.so`"
    )
    header = [
        f"`python -m compiler bench {bundle_dir}`: bundle {manifest['version']} "
        f"({len(manifest['feature_names'])} features), {library}.",
        f"Machine before: {_machine_state()}.",
    ]
    with tempfile.TemporaryDirectory(prefix="reco-bench-") as tmp:
        base = BuildOptions(
            cc=flags.get("cc", "gcc"), parallel_comp=int(flags.get("parallel_comp", 0))
        )
        built = _build_libraries(
            bundle_dir, Path(tmp), base, _builds_wanted(options, bundle_has), sample, probe_rows
        )
        unavailable += built.unavailable
        tl2cgen_library = (
            bundle_dir / LIBRARY_FILE
            if bundle_has == TL2CGEN
            else built.paths.get(compiled_label(TL2CGEN))
        )
        predictors.update(built.predictors)
        if tl2cgen_library is not None:
            predictors["tl2cgen Predictor"] = _tl2cgen_predictor(tl2cgen_library)
        session_columns = _session_columns(manifest) if options.serving_shape else None
        measurements = measure(predictors, pool, options, rng, session_columns)
    # The libraries (the bundle's, then the other generator's), the other backends, variants.
    order = sorted(predictors, key=_table_position)
    header += [f"Built here from model.txt and checked against LightGBM: {n}." for n in built.notes]
    header += [f"Not measured: {reason}." for reason in unavailable]
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
    return "\n".join(header) + "\n\n" + markdown_table(measurements, order)
