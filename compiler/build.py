"""`compiler build`: model.txt to model.so (flat or TL2cgen C) and model.onnx, proven by parity."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import tl2cgen
import treelite

from compiler.cache import BuildCache, cache_key, compiler_source_sha256
from compiler.check_rows import parity_check_rows
from compiler.codegen import generate_sources
from compiler.codegen_choice import CODEGENS, FLAT, CodegenChoice, choose_codegen
from compiler.flatgen import (
    BLOCK_ROWS,
    DEFAULT_BLOCK_ROWS,
    NotEligibleError,
    generate_flat_source,
)
from compiler.onnx_model import export_onnx
from compiler.request_build import (
    check_request_kernel,
    request_kernel_refusal,
    request_kernel_sources,
    with_shared_sessions,
)
from compiler.toolchain import (
    LDFLAGS,
    ToolchainError,
    cc_version,
    cflags,
    compile_shared,
    find_cc,
    required_cpu_flags,
    resolved_march,
)
from reco import (
    LIBRARY_FILE,
    MODEL_FILE,
    ONNX_FILE,
    TRAIN_SAMPLE_FILE,
    BundleError,
    GroupedCheck,
    NativeLibrary,
    OnnxModel,
    ParityError,
    SigningKey,
    cpu_model,
    probe_from_manifest,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)

logger = logging.getLogger(__name__)

# The dense float32 batch entry point every model library carries (reco.NativeLibrary calls it).
ENTRY_SOURCE = Path(__file__).with_name("dense_entry.c")

F32 = npt.NDArray[np.float32]


class BuildError(Exception):
    """The bundle cannot be compiled, or the library failed parity; nothing was written."""


@dataclass(frozen=True)
class BuildOptions:
    """How to compile. entry_source (TL2cgen's entry point) exists so tests can build a
    deliberately broken library. quantize, annotate and parallel_comp apply to TL2cgen only,
    block_rows to the flat generator only."""

    codegen: str = "auto"
    target: str = "portable"
    # Quantized (integer bin) comparisons measured 17-25% faster per row on the
    # production-shaped model; see docs/benchmarks.md before changing this default.
    quantize: bool = True
    annotate: bool = True
    parallel_comp: int = 0
    cc: str = "gcc"
    opt_level: str = "O3"
    jobs: int = 2
    cache_dir: Path | None = None
    entry_source: Path = field(default=ENTRY_SOURCE)
    block_rows: int = DEFAULT_BLOCK_ROWS

    def __post_init__(self) -> None:
        if self.codegen not in CODEGENS:
            raise ValueError(f"codegen must be one of {list(CODEGENS)}, got {self.codegen!r}")
        if self.block_rows not in BLOCK_ROWS:
            raise ValueError(f"block_rows must be one of {BLOCK_ROWS}, got {self.block_rows}")

    def flags(self) -> dict[str, Any]:
        """The options that shape the library (recorded in the manifest and the cache key)."""
        return {
            "codegen": self.codegen,
            "block_rows": self.block_rows,
            "target": self.target,
            "quantize": self.quantize,
            "annotate": self.annotate,
            "parallel_comp": self.parallel_comp,
            "cc": self.cc,
            "cflags": cflags(self.target, self.opt_level),
            "ldflags": list(LDFLAGS),
        }


@dataclass(frozen=True)
class BuildResult:
    """What a build did: cache is "bundle" (already built), "store" (reused) or "miss"."""

    cache: str
    seconds: float
    section: dict[str, Any]


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def tool_versions(cc_path: str | None) -> dict[str, str | None]:
    """Versions of every tool whose output ends up in the bundle."""
    versions = {
        name: _package_version(name)
        for name in ("treelite", "tl2cgen", "lightgbm", "onnxmltools", "onnx", "onnxruntime")
    }
    versions["gcc"] = cc_version(cc_path) if cc_path else None
    return versions


def _target_cpu(cc_path: str | None, target: str) -> dict[str, Any]:
    if cc_path is None:
        return {"target": target, "march": None, "required_cpu_flags": []}
    return {
        "target": target,
        "march": resolved_march(cc_path, target),
        "required_cpu_flags": required_cpu_flags(cc_path, target),
    }


def compile_library(
    model_file: Path,
    work_dir: Path,
    options: BuildOptions,
    annotation_rows: F32 | None,
    cc_path: str,
    codegen: str,
    request_features: Sequence[str] | None = None,
) -> Path:
    """Generates C for model_file with the given generator ("flat", or "tl2cgen" plus the dense
    entry point), with the request kernel for request_features when given, and compiles model.so
    in work_dir. Raises ToolchainError if gcc fails, and NotEligibleError if the model cannot be
    generated flat (or, with request_features, cannot carry the request kernel)."""
    source_dir = work_dir / "src"
    if codegen == FLAT:
        sources = [generate_flat_source(model_file, source_dir, options.block_rows)]
    else:
        sources = generate_sources(
            model_file,
            source_dir,
            quantize=options.quantize,
            parallel_comp=options.parallel_comp,
            annotation_rows=annotation_rows if options.annotate else None,
        )
        sources.append(options.entry_source)
    if request_features is not None:
        sources += request_kernel_sources(model_file, source_dir, request_features)
    library = work_dir / LIBRARY_FILE
    compile_shared(
        cc_path,
        sources,
        [source_dir],
        cflags(options.target, options.opt_level),
        library,
        jobs=options.jobs,
    )
    return library


def _load_train_sample(bundle_dir: Path, manifest: dict[str, Any], n_features: int) -> F32 | None:
    path = bundle_dir / TRAIN_SAMPLE_FILE
    if not path.is_file():
        logger.warning(
            "%s is absent: annotation and the parity check use the parity probe rows only", path
        )
        return None
    if TRAIN_SAMPLE_FILE in manifest["files"]:
        verify_files(bundle_dir, manifest["files"], [TRAIN_SAMPLE_FILE])
    sample = np.load(path, allow_pickle=False)
    if sample.ndim != 2 or sample.shape[1] != n_features or sample.dtype != np.float32:
        raise BuildError(
            f"{path} must hold float32 rows of {n_features} features, "
            f"got {sample.dtype} array of shape {sample.shape}"
        )
    return np.ascontiguousarray(sample)


def _check_model(booster: lgb.Booster, feature_names: list[str], model_file: Path) -> None:
    objective = str(booster.dump_model().get("objective", ""))
    if not objective.startswith("binary"):
        raise BuildError(f"{model_file} has objective {objective!r}; only binary models compile")
    if booster.num_feature() != len(feature_names):
        raise BuildError(
            f"{model_file} has {booster.num_feature()} features, "
            f"the manifest lists {len(feature_names)}"
        )


def _choose_codegen(model_file: Path, requested: str) -> CodegenChoice:
    try:
        choice = choose_codegen(model_file, requested)
    except (NotEligibleError, treelite.TreeliteError) as exc:
        raise BuildError(f"cannot generate C for {model_file}: {exc}") from exc
    logger.info("codegen %s (--codegen %s): %s", choice.used, requested, choice.reason)
    return choice


def _outputs_intact(bundle_dir: Path, manifest: dict[str, Any], section: dict[str, Any]) -> bool:
    try:
        verify_files(bundle_dir, manifest["files"], list(section.get("outputs", {})))
    except BundleError as exc:
        logger.info("rebuilding: %s", exc)
        return False
    return True


def _check_library(check: GroupedCheck, path: Path) -> tuple[dict[str, Any], str]:
    record, message = check.run("compiled", NativeLibrary(path).predict_unchecked)
    request_record, request_message = check_request_kernel(check, path)
    if request_record is not None:
        record["request_kernel"] = request_record
    return record, message or request_message


def _check_onnx(check: GroupedCheck, path: Path) -> tuple[dict[str, Any], str]:
    return check.run("onnx", OnnxModel(path).predict)


def _fresh_artifacts(
    model_file: Path,
    out: Path,
    options: BuildOptions,
    cc_path: str | None,
    annotation_rows: F32,
    check: GroupedCheck,
    codegen: str,
    request_features: Sequence[str] | None,
) -> dict[str, dict[str, Any]]:
    """Builds model.so and model.onnx into out; returns each backend's record.

    Raises BuildError if the library fails parity; an ONNX model that fails is dropped.
    """
    records: dict[str, dict[str, Any]] = {}
    if cc_path is None:
        reason = f"C compiler {options.cc!r} not found on PATH"
        logger.error("no compiled backend: %s", reason)
        records["compiled"] = {"status": "skipped", "reason": reason}
    else:
        try:
            library = compile_library(
                model_file, out, options, annotation_rows, cc_path, codegen, request_features
            )
        except (
            ToolchainError,
            treelite.TreeliteError,
            tl2cgen.TL2cgenError,
            NotEligibleError,
        ) as exc:
            raise BuildError(f"compiling {model_file} failed: {exc}") from exc
        try:
            records["compiled"], message = _check_library(check, library)
        except (OSError, ParityError) as exc:  # cannot even be loaded or compared
            raise BuildError(f"the built library is unusable: {exc}") from exc
        if message:
            raise BuildError(f"refusing to install the library: {message}")
    onnx_path = out / ONNX_FILE
    try:
        export_onnx(model_file, len(check.feature_names), onnx_path)
        record, message = _check_onnx(check, onnx_path)
    except Exception as exc:  # onnxmltools/onnxruntime raise many types; any means "no onnx"
        record, message = {}, f"export failed: {type(exc).__name__}: {exc}"
    if message:
        logger.warning("onnx backend rejected at build: %s", message)
        onnx_path.unlink(missing_ok=True)
        record = {**record, "status": "rejected", "reason": message}
    records["onnx"] = record
    return records


def _cached_artifacts(
    entry: Path, meta: dict[str, Any], out: Path, check: GroupedCheck
) -> dict[str, dict[str, Any]] | None:
    """Copies a cache entry's artifacts into out and re-checks their parity on this bundle's rows;
    None if any fails (the caller then builds afresh)."""
    records: dict[str, dict[str, Any]] = meta["backends"]
    for name in meta["files"]:
        shutil.copy2(entry / name, out / name)
    checks = {"compiled": (LIBRARY_FILE, _check_library), "onnx": (ONNX_FILE, _check_onnx)}
    for backend, (name, run_check) in checks.items():
        if records.get(backend, {}).get("status") != "ok":
            continue
        try:
            records[backend], message = run_check(check, out / name)
        except Exception as exc:  # dlopen/onnxruntime failures alike: rebuild rather than fail
            message = f"cannot be loaded: {exc}"
        if message:
            logger.warning(
                "cached %s in %s fails parity here, rebuilding: %s", name, entry, message
            )
            return None
    return records


def _install(bundle_dir: Path, files: dict[str, Path], remove: list[str]) -> dict[str, str]:
    """Moves finished files into the bundle; returns their sha256.

    Each file is copied into a staging dir inside the bundle (same filesystem) and renamed into
    place: a reader sees the old file or the new one, and a process that has the old model.so
    mapped keeps its (unlinked) inode rather than seeing it rewritten under it.
    """
    staging = Path(tempfile.mkdtemp(dir=bundle_dir, prefix=".compiler-staging-"))
    try:
        hashes = {}
        for name, source in files.items():
            shutil.copy2(source, staging / name)
            hashes[name] = sha256_file(staging / name)
        for name in files:
            (staging / name).replace(bundle_dir / name)
        for name in remove:
            (bundle_dir / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return hashes


def build_bundle(
    bundle_dir: Path, options: BuildOptions, signing_key: SigningKey | None = None
) -> BuildResult:
    """Compiles a bundle in place: model.so and model.onnx beside model.txt, manifest updated.

    With a signing key, the manifest's signature is checked first (the compiler never signs what
    training did not) and the updated manifest is signed; without one, a signature left from
    before is removed, since it no longer matches.

    Raises BuildError, leaving the bundle untouched, if the inputs are unusable or the library
    differs from LightGBM by more than 1e-6 on any checked row. A failing ONNX export is recorded
    (and model.onnx left out) rather than fatal: the compiled and LightGBM backends still serve.
    """
    started = time.perf_counter()
    try:
        manifest = read_manifest(bundle_dir, signing_key)
        verify_files(bundle_dir, manifest["files"], [MODEL_FILE])
    except BundleError as exc:
        raise BuildError(str(exc)) from exc
    model_file = bundle_dir / MODEL_FILE
    names: list[str] = list(manifest["feature_names"])
    try:
        booster = lgb.Booster(model_file=str(model_file))
    except lgb.basic.LightGBMError as exc:
        raise BuildError(f"LightGBM cannot load {model_file}: {exc}") from exc
    _check_model(booster, names, model_file)
    codegen = _choose_codegen(model_file, options.codegen)
    request_refusal = request_kernel_refusal(model_file, names)
    if request_refusal:
        logger.warning("model.so gets no request kernel: %s", request_refusal)

    cc_path = find_cc(options.cc)
    target_cpu = _target_cpu(cc_path, options.target)
    model_sha = manifest["files"][MODEL_FILE]
    key_inputs = {
        "model_sha256": model_sha,
        "entry_point_sha256": sha256_file(options.entry_source),
        "compiler_sha256": compiler_source_sha256(),
        "flags": options.flags(),
        "codegen": codegen.used,
        "tools": tool_versions(cc_path),
        "target_cpu": target_cpu,
        "request_kernel": not request_refusal,
    }
    key = cache_key(key_inputs)
    previous = manifest.get("compiler")
    if (
        previous
        and previous.get("cache_key") == key
        and _outputs_intact(bundle_dir, manifest, previous)
    ):
        logger.info("%s is already compiled with these inputs (cache key %s)", bundle_dir, key[:12])
        return BuildResult("bundle", time.perf_counter() - started, previous)

    probe_rows, _ = probe_from_manifest(manifest)
    if probe_rows.ndim != 2 or len(probe_rows) == 0 or probe_rows.shape[1] != len(names):
        raise BuildError(
            f"{bundle_dir}: the manifest's parity probe must hold rows of {len(names)} "
            f"features, got shape {probe_rows.shape}"
        )
    sample = _load_train_sample(bundle_dir, manifest, len(names))
    annotation_rows = probe_rows if sample is None else sample
    annotation = {
        "enabled": options.annotate and codegen.used != FLAT,
        "rows": len(annotation_rows),
        "source": f"{bundle_dir.name}/{'parity_probe' if sample is None else TRAIN_SAMPLE_FILE}",
    }
    groups = parity_check_rows(probe_rows, sample, booster.dump_model())
    if not request_refusal:
        groups = with_shared_sessions(groups)
    check = GroupedCheck(groups, booster.predict, names)
    logger.info(
        "parity check rows: %s", ", ".join(f"{len(rows)} {name}" for name, rows in groups.items())
    )

    with tempfile.TemporaryDirectory(prefix="reco-compiler-") as tmp:
        out = Path(tmp)
        cache = BuildCache(options.cache_dir) if options.cache_dir else None
        hit = cache.lookup(key) if cache else None
        records = _cached_artifacts(*hit, out, check) if hit else None
        if hit and records is not None:
            state = "store"
            # Annotation only moves LIKELY/UNLIKELY hints, never results, so it is not in the key.
            annotation = hit[1].get("annotation", annotation)
        else:
            state = "miss"
            records = _fresh_artifacts(
                model_file,
                out,
                options,
                cc_path,
                annotation_rows,
                check,
                codegen.used,
                None if request_refusal else names,
            )
        produced = {
            name: out / name
            for backend, name in (("compiled", LIBRARY_FILE), ("onnx", ONNX_FILE))
            if records[backend]["status"] == "ok"
        }
        if cache is not None and state == "miss" and LIBRARY_FILE in produced:
            meta = {"key_inputs": key_inputs, "backends": records, "annotation": annotation}
            cache.store(key, produced, meta)
        absent = [name for name in (LIBRARY_FILE, ONNX_FILE) if name not in produced]
        hashes = _install(bundle_dir, produced, absent)

    files = {n: h for n, h in manifest["files"].items() if n not in absent}
    section = {
        "cache_key": key,
        "cache": state,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_seconds": round(time.perf_counter() - started, 3),
        "tools": key_inputs["tools"],
        "flags": options.flags(),
        "codegen": codegen.to_manifest(),
        "request_kernel": {"built": not request_refusal, "reason": request_refusal or None},
        "target_cpu": {**target_cpu, "build_host_cpu": cpu_model()},
        "inputs": {
            MODEL_FILE: model_sha,
            TRAIN_SAMPLE_FILE: None
            if sample is None
            else sha256_file(bundle_dir / TRAIN_SAMPLE_FILE),
            "entry_point_sha256": key_inputs["entry_point_sha256"],
            "compiler_sha256": key_inputs["compiler_sha256"],
        },
        "annotation": annotation,
        "outputs": hashes,
        "backends": records,
        "parity_rows": {name: len(rows) for name, rows in groups.items()},
    }
    write_manifest(
        bundle_dir, {**manifest, "files": {**files, **hashes}, "compiler": section}, signing_key
    )
    logger.info(
        "compiled %s in %.1fs (cache %s, codegen %s): %s",
        bundle_dir,
        section["build_seconds"],
        state,
        codegen.used,
        ", ".join(f"{b} {r['status']}" for b, r in records.items()),
    )
    return BuildResult(state, section["build_seconds"], section)
