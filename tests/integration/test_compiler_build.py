"""`compiler build`: artifacts and manifest, cache hits, refusals, and the command line."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

import compiler.build
import compiler.flatgen
from compiler.bench import BenchOptions, run_bench
from compiler.build import ENTRY_SOURCE, BuildError
from compiler.synthetic import write_synthetic_bundle
from reco import (
    LIBRARY_FILE,
    MODEL_FILE,
    ONNX_FILE,
    TRAIN_SAMPLE_FILE,
    load_backend,
    read_manifest,
    verify_files,
)
from tests.integration.compiler_support import SMALL, build, copy_bundle, make_bundle, shared_cache

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = make_bundle(tmp_path_factory.mktemp("build"), SMALL)
    build(bundle, shared_cache(tmp_path_factory))
    return bundle


def _snapshot(bundle: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(bundle.iterdir())}


def _forbid_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> Path:
        raise AssertionError("compile_library was called on a cache hit")

    monkeypatch.setattr(compiler.build, "compile_library", refuse)


def test_build_writes_library_onnx_and_manifest(built: Path) -> None:
    manifest = read_manifest(built)
    verify_files(built, manifest["files"], [MODEL_FILE, LIBRARY_FILE, ONNX_FILE, TRAIN_SAMPLE_FILE])
    section = manifest["compiler"]
    assert set(section["tools"]) >= {"treelite", "tl2cgen", "gcc", "onnxmltools", "onnxruntime"}
    assert section["tools"]["gcc"].startswith("gcc ")
    assert (
        section["flags"]["cflags"][:1] == ["-O3"] and "-march=x86-64" in section["flags"]["cflags"]
    )
    assert section["target_cpu"]["march"] == "x86-64"
    assert set(section["target_cpu"]["required_cpu_flags"]) <= {"mmx", "sse", "sse2"}
    assert section["inputs"][MODEL_FILE] == manifest["files"][MODEL_FILE]
    assert section["outputs"] == {n: manifest["files"][n] for n in (LIBRARY_FILE, ONNX_FILE)}
    assert section["codegen"] == {
        "used": "flat",
        "requested": "auto",
        "reason": "eligible: 25 trees of depth <= 4, numerical splits only",
    }
    # Branch annotation is TL2cgen's: the flat library has no branches to annotate.
    assert not section["annotation"]["enabled"] and section["annotation"]["rows"] == 1000
    assert section["build_seconds"] > 0 and len(section["cache_key"]) == 64
    assert not [p for p in built.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_rebuilding_an_unchanged_bundle_is_a_cache_hit(
    built: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(built)
    _forbid_compiling(monkeypatch)
    result = build(built, shared_cache(tmp_path_factory))
    assert result.cache == "bundle"
    assert _snapshot(built) == before


def test_new_bundle_with_the_same_model_reuses_the_cached_library(
    built: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    other = tmp_path / "retrained"
    write_synthetic_bundle(other, SMALL)  # deterministic training: the same model.txt
    assert (other / MODEL_FILE).read_bytes() == (built / MODEL_FILE).read_bytes()
    _forbid_compiling(monkeypatch)
    result = build(other, shared_cache(tmp_path_factory))
    assert result.cache == "store"
    assert (other / LIBRARY_FILE).read_bytes() == (built / LIBRARY_FILE).read_bytes()
    assert result.section["backends"]["compiled"]["rows_checked"] > 0  # parity re-run here
    assert load_backend(other).name == "compiled"


def test_the_cache_key_covers_the_generator(
    built: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bundle = copy_bundle(built, tmp_path / "bundle")
    flat_section = read_manifest(bundle)["compiler"]
    result = build(bundle, shared_cache(tmp_path_factory), codegen="tl2cgen")
    assert result.cache == "miss" and result.section["cache_key"] != flat_section["cache_key"]
    assert result.section["codegen"] == {
        "used": "tl2cgen",
        "requested": "tl2cgen",
        "reason": "requested",
    }
    assert result.section["annotation"]["enabled"]
    assert (bundle / LIBRARY_FILE).read_bytes() != (built / LIBRARY_FILE).read_bytes()
    assert load_backend(bundle).name == "compiled"
    # Back to auto: the flat library comes from the cache, parity re-checked.
    assert build(bundle, shared_cache(tmp_path_factory)).cache == "store"
    assert (bundle / LIBRARY_FILE).read_bytes() == (built / LIBRARY_FILE).read_bytes()


def test_flat_requested_for_a_model_it_cannot_take_is_refused_by_reason(tmp_path: Path) -> None:
    bundle, _ = make_bundle(tmp_path, replace(SMALL, seed=31, categorical=(1,)))
    before = _snapshot(bundle)
    with pytest.raises(BuildError, match="--codegen flat: tree 0 has categorical splits"):
        build(bundle, None, codegen="flat")
    assert _snapshot(bundle) == before


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _ = make_bundle(tmp_path / "a", replace(SMALL, seed=21))
    key = build(first, cache).section["cache_key"]
    cached_library = cache / key / LIBRARY_FILE
    cached_library.write_bytes(cached_library.read_bytes() + b"tampered")
    second = copy_bundle(first, tmp_path / "b")
    manifest = read_manifest(second)
    del manifest["compiler"]
    compiler.build.write_manifest(second, manifest)
    result = build(second, cache)
    assert result.cache == "miss"
    assert load_backend(second).name == "compiled"


@pytest.mark.parametrize("codegen", ["flat", "tl2cgen"])
def test_build_refuses_a_library_that_fails_parity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codegen: str
) -> None:
    # A plausible bug: the entry point reads NaN as 0.0 instead of "missing".
    broken = tmp_path / "broken_entry.c"
    broken.write_text(
        ENTRY_SOURCE.read_text().replace("row[j].missing = -1;", "row[j].fvalue = 0.0;")
    )
    kernel = compiler.flatgen._KERNEL
    nan_as_zero = kernel.replace("isnan(v) ? -INFINITY : kept", "isnan(v) ? 0.0f : kept")
    assert nan_as_zero != kernel
    monkeypatch.setattr(compiler.flatgen, "_KERNEL", nan_as_zero)
    bundle, _ = make_bundle(tmp_path, replace(SMALL, seed=22))
    before = _snapshot(bundle)
    with pytest.raises(BuildError) as caught:
        build(bundle, tmp_path / "cache", entry_source=broken, codegen=codegen)
    message = str(caught.value)
    assert "compiled parity failed" in message and "worst row" in message
    assert "lightgbm 0." in message and "vs compiled 0." in message and "=NaN" in message
    assert _snapshot(bundle) == before  # nothing written into the bundle
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("codegen", ["flat", "tl2cgen"])
def test_build_refuses_a_model_treelite_translates_differently(
    tmp_path: Path, codegen: str
) -> None:
    # LightGBM's zero_as_missing reads 0 and NaN alike; the generated code does not.
    bundle, _ = make_bundle(
        tmp_path, replace(SMALL, seed=23, extra_params={"zero_as_missing": True})
    )
    before = _snapshot(bundle)
    with pytest.raises(BuildError, match="compiled parity failed"):
        build(bundle, None, codegen=codegen)
    assert _snapshot(bundle) == before


def test_without_a_c_compiler_onnx_still_serves(tmp_path: Path) -> None:
    bundle, _ = make_bundle(tmp_path, replace(SMALL, seed=24))
    result = build(bundle, None, cc="no-such-cc")
    assert result.section["backends"]["compiled"] == {
        "status": "skipped",
        "reason": "C compiler 'no-such-cc' not found on PATH",
    }
    assert not (bundle / LIBRARY_FILE).exists()
    backend = load_backend(bundle)
    assert backend.name == "onnx"
    assert "not found on PATH" in backend.rejected[0]
    table = run_bench(bundle, BenchOptions(batch_sizes=(1,), repeats=1, pool_rows=1000))
    assert "Not measured: " in table and "model.so is missing" in table
    for codegen in ("flat", "tl2cgen"):
        assert f"Not measured: compiled ({codegen}): C compiler 'no-such-cc' not found" in table
    assert "| onnx | 1 |" in table and "| compiled" not in table


def test_onnx_failing_parity_is_left_out_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other, _ = make_bundle(tmp_path / "other", replace(SMALL, seed=26))
    real_export = compiler.build.export_onnx

    def export_the_wrong_model(model_file: Path, n_features: int, out: Path) -> None:
        real_export(other / MODEL_FILE, n_features, out)

    monkeypatch.setattr(compiler.build, "export_onnx", export_the_wrong_model)
    bundle, _ = make_bundle(tmp_path, replace(SMALL, seed=25))
    result = build(bundle, None)
    record = result.section["backends"]["onnx"]
    assert record["status"] == "rejected" and "onnx parity failed" in record["reason"]
    assert not (bundle / ONNX_FILE).exists() and ONNX_FILE not in read_manifest(bundle)["files"]
    (bundle / LIBRARY_FILE).unlink()
    backend = load_backend(bundle)
    assert backend.name == "lightgbm"
    assert "onnx parity failed" in backend.rejected[1]


def test_absent_train_sample_falls_back_to_probe_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle, _ = make_bundle(tmp_path, replace(SMALL, seed=27))
    (bundle / TRAIN_SAMPLE_FILE).unlink()
    with caplog.at_level(logging.WARNING):
        result = build(bundle, None)
    assert "train_sample.npy is absent" in caplog.text
    assert result.section["annotation"]["source"].endswith("parity_probe")
    assert "train_sample" not in result.section["parity_rows"]


def test_unusable_inputs_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"no manifest\.json"):
        build(tmp_path, None)
    bundle, _ = make_bundle(tmp_path, replace(SMALL, seed=28))
    np.save(bundle / TRAIN_SAMPLE_FILE, np.zeros((5, 3), dtype=np.float64))
    manifest = read_manifest(bundle)
    del manifest["files"][TRAIN_SAMPLE_FILE]
    compiler.build.write_manifest(bundle, manifest)
    with pytest.raises(BuildError, match=r"float32 rows of 9 features, got float64 .* \(5, 3\)"):
        build(bundle, None)
    regression = lgb.train(
        {"objective": "regression", "verbose": -1},
        lgb.Dataset(np.random.default_rng(0).random((200, 9)), np.arange(200.0)),
        num_boost_round=2,
    )
    regression.save_model(str(bundle / MODEL_FILE))
    manifest["files"][MODEL_FILE] = compiler.build.sha256_file(bundle / MODEL_FILE)
    compiler.build.write_manifest(bundle, manifest)
    with pytest.raises(BuildError, match="objective 'regression'"):
        build(bundle, None)


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compiler", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "RECO_COMPILER_CACHE": str(cache), "HOME": str(cache)},
        check=False,
        timeout=300,
    )


def test_command_line_build_and_bench(built: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(built, tmp_path / "bundle")
    done = _cli("build", str(bundle), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "already compiled" in done.stderr
    done = _cli(
        "bench",
        str(bundle),
        "--repeats",
        "1",
        "--batch-sizes",
        "1,10",
        "--pool-rows",
        "500",
        cache=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "`model.so` made by the flat generator" in done.stdout
    assert "Built here from model.txt and checked against LightGBM: compiled (tl2cgen)" in (
        done.stdout
    )
    names = ("compiled (flat)", "compiled (tl2cgen)", "onnx", "lightgbm", "tl2cgen Predictor")
    for name in names:
        assert f"| {name} | 1 |" in done.stdout and f"| {name} | 10 |" in done.stdout


def test_command_line_refusal_exits_non_zero(tmp_path: Path) -> None:
    bundle, _ = make_bundle(
        tmp_path, replace(SMALL, seed=29, extra_params={"zero_as_missing": True})
    )
    done = _cli("build", str(bundle), "--no-cache", cache=tmp_path)
    assert done.returncode == 1
    assert "compiled parity failed" in done.stderr and "worst row" in done.stderr
    assert not (bundle / LIBRARY_FILE).exists()


def test_parallel_compilation_and_o2_build_pass_parity(tmp_path: Path) -> None:
    bundle, _ = make_bundle(tmp_path, replace(SMALL, seed=30))
    section = build(bundle, None, codegen="tl2cgen", parallel_comp=3, opt_level="O2").section
    assert section["flags"]["parallel_comp"] == 3 and section["flags"]["cflags"][0] == "-O2"
    assert section["backends"]["compiled"]["status"] == "ok"
    assert load_backend(bundle).name == "compiled"
