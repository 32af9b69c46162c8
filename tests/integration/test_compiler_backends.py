"""Backend selection: auto prefers compiled, falls back with logged reasons, and is thread-safe."""

from __future__ import annotations

import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from compiler.synthetic import SyntheticSpec, synthetic_rows
from reco import (
    LIBRARY_FILE,
    ONNX_FILE,
    BackendError,
    hash_files,
    load_backend,
    read_manifest,
    write_manifest,
)
from tests.integration.compiler_support import build, copy_bundle, make_bundle, shared_cache


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, lgb.Booster]:
    bundle, booster = make_bundle(tmp_path_factory.mktemp("backends"), SyntheticSpec())
    build(bundle, shared_cache(tmp_path_factory))
    return bundle, booster


@pytest.fixture
def bundle_copy(compiled: tuple[Path, lgb.Booster], tmp_path: Path) -> Path:
    return copy_bundle(compiled[0], tmp_path / "bundle")


def _rehash(bundle: Path, name: str) -> None:
    manifest = read_manifest(bundle)
    manifest["files"].update(hash_files(bundle, [name]))
    write_manifest(bundle, manifest)


def test_auto_serves_the_compiled_library(compiled: tuple[Path, lgb.Booster]) -> None:
    backend = load_backend(compiled[0])
    assert backend.name == "compiled"
    assert backend.rejected == []
    assert backend.n_features == 27
    assert backend.parity is not None and backend.parity.max_abs_diff <= 1e-6


def test_deleted_library_falls_back_to_onnx(
    bundle_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (bundle_copy / LIBRARY_FILE).unlink()
    with caplog.at_level(logging.WARNING):
        backend = load_backend(bundle_copy)
    assert backend.name == "onnx"
    assert len(backend.rejected) == 1
    assert (
        backend.rejected[0].startswith("compiled: ")
        and "model.so is missing" in backend.rejected[0]
    )
    assert "model.so is missing" in caplog.text


def test_corrupted_library_is_never_loaded(bundle_copy: Path) -> None:
    library = bundle_copy / LIBRARY_FILE
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))
    backend = load_backend(bundle_copy)
    assert backend.name == "onnx"
    assert "corrupt file" in backend.rejected[0] and "sha256" in backend.rejected[0]


def test_library_and_onnx_gone_falls_back_to_lightgbm(bundle_copy: Path) -> None:
    (bundle_copy / LIBRARY_FILE).unlink()
    (bundle_copy / ONNX_FILE).unlink()
    backend = load_backend(bundle_copy)
    assert backend.name == "lightgbm"
    assert [reason.split(":")[0] for reason in backend.rejected] == ["compiled", "onnx"]
    assert "model.onnx is missing" in backend.rejected[1]


def test_cpu_without_a_required_instruction_set_rejects_the_library(bundle_copy: Path) -> None:
    manifest = read_manifest(bundle_copy)
    manifest["compiler"]["target_cpu"]["required_cpu_flags"].append("avx9000")
    write_manifest(bundle_copy, manifest)
    backend = load_backend(bundle_copy)
    assert backend.name == "onnx"
    assert "CPU mismatch" in backend.rejected[0] and "avx9000" in backend.rejected[0]


def test_a_library_that_is_not_elf_is_refused_before_dlopen(bundle_copy: Path) -> None:
    (bundle_copy / LIBRARY_FILE).write_bytes(b"not an ELF file")
    _rehash(bundle_copy, LIBRARY_FILE)  # hash matches, so the check refuses it, not the hash
    backend = load_backend(bundle_copy)
    assert backend.name == "onnx"
    assert "refused before dlopen" in backend.rejected[0]
    assert "not an ELF file" in backend.rejected[0]


def test_a_library_without_the_entry_point_is_rejected_after_dlopen(
    bundle_copy: Path, tmp_path: Path
) -> None:
    source = tmp_path / "empty.c"
    source.write_text("int unrelated(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(bundle_copy / LIBRARY_FILE), str(source)],
                   check=True)  # fmt: skip
    _rehash(bundle_copy, LIBRARY_FILE)
    backend = load_backend(bundle_copy)
    assert backend.name == "onnx"
    assert "dlopen failed" in backend.rejected[0] and "entry point" in backend.rejected[0]


def test_probe_mismatch_rejects_every_backend_and_names_each_reason(bundle_copy: Path) -> None:
    manifest = read_manifest(bundle_copy)
    probe = manifest["parity_probe"]
    probe["probabilities"] = [p + 0.01 for p in probe["probabilities"]]
    write_manifest(bundle_copy, manifest)
    with pytest.raises(BackendError) as caught:
        load_backend(bundle_copy)
    message = str(caught.value)
    for kind in ("compiled", "onnx", "lightgbm"):
        assert f"{kind}: {kind} parity failed" in message
    assert "worst row" in message


def test_bundle_never_compiled_is_served_by_lightgbm(tmp_path: Path) -> None:
    bundle, _ = make_bundle(tmp_path, SyntheticSpec(n_trees=5, n_rows=500))
    backend = load_backend(bundle)
    assert backend.name == "lightgbm"
    assert "never compiled" in backend.rejected[0]


def test_explicit_kind_and_unknown_kind(compiled: tuple[Path, lgb.Booster]) -> None:
    assert load_backend(compiled[0], kind="lightgbm").name == "lightgbm"
    assert load_backend(compiled[0], kind="onnx").name == "onnx"
    with pytest.raises(ValueError, match="'gpu'"):
        load_backend(compiled[0], kind="gpu")


def test_missing_bundle_raises_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"no manifest\.json"):
        load_backend(tmp_path)


@pytest.mark.parametrize("kind", ["compiled", "onnx", "lightgbm"])
def test_predict_rejects_rows_of_the_wrong_shape_or_type(
    compiled: tuple[Path, lgb.Booster], kind: str
) -> None:
    backend = load_backend(compiled[0], kind=kind)
    good = np.zeros((4, 27), dtype=np.float32)
    bad_inputs = {
        "float64": good.astype(np.float64),
        r"shape \(27,\)": good[0],
        r"shape \(4, 26\)": good[:, :26].copy(),
        "non-contiguous": np.asfortranarray(good),
        "list": good.tolist(),
    }
    for expected, rows in bad_inputs.items():
        with pytest.raises(ValueError, match=expected):
            backend.predict(rows)  # type: ignore[arg-type]
    assert backend.predict(good[:0]).shape == (0,)


def test_concurrent_calls_match_serial_calls(compiled: tuple[Path, lgb.Booster]) -> None:
    bundle, booster = compiled
    backend = load_backend(bundle, kind="compiled")
    rows = synthetic_rows(SyntheticSpec(), 20_000, np.random.default_rng(11))
    batches = [np.ascontiguousarray(rows[i : i + 97]) for i in range(0, len(rows), 97)]
    serial = [backend.predict(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            concurrent = list(pool.map(backend.predict, batches))
            for one, other in zip(serial, concurrent, strict=True):
                assert np.array_equal(one, other)
    assert np.max(np.abs(np.concatenate(serial) - booster.predict(rows))) <= 1e-6
