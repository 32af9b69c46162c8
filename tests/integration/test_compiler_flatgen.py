"""The flat generator's C, compiled: Treelite's results on every operator and batch shape, and the
same ABI as the TL2cgen library."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import cffi
import numpy as np
import pytest
import treelite

from compiler.flatgen import BLOCK_ROWS, read_forest, render_c
from compiler.synthetic import synthetic_rows
from compiler.toolchain import cflags, compile_shared
from reco import LIBRARY_FILE, NativeLibrary, read_manifest
from tests.flat_models import EVERY_OPERATOR, build_model, edge_rows, zeroed
from tests.integration.compiler_support import SMALL, build, make_bundle


def _compile(source: str, work: Path) -> NativeLibrary:
    work.mkdir(parents=True, exist_ok=True)
    (work / "flat.c").write_text(source)
    compile_shared("gcc", [work / "flat.c"], [], cflags("portable", "O3"), work / "flat.so")
    return NativeLibrary(work / "flat.so")


@pytest.mark.parametrize("block_rows", BLOCK_ROWS)
@pytest.mark.parametrize(
    "postprocessor,alpha,base", [("sigmoid", 0.375, 0.25), ("sigmoid", -1.5, 0), ("identity", 1, 0)]
)
def test_compiled_tables_reproduce_treelite_exactly(
    tmp_path: Path, block_rows: int, postprocessor: str, alpha: float, base: float
) -> None:
    model = build_model(EVERY_OPERATOR, 3, postprocessor, alpha, base)
    library = _compile(render_c(read_forest(model), block_rows), tmp_path)
    rows = edge_rows(EVERY_OPERATOR, 3, np.random.default_rng(block_rows))
    expected = treelite.gtil.predict(model, zeroed(rows).astype(np.float64)).ravel()
    assert np.array_equal(library.predict_unchecked(rows), expected)


def test_every_batch_size_takes_block_and_single_row_paths_alike(tmp_path: Path) -> None:
    model = build_model(EVERY_OPERATOR * 3, 3)  # 21 trees: the single-row path pads to 24
    library = _compile(render_c(read_forest(model), 8), tmp_path)
    rows = edge_rows(EVERY_OPERATOR, 3, np.random.default_rng(5))[:60]
    one_by_one = np.concatenate([library.predict_unchecked(rows[i : i + 1]) for i in range(60)])
    for batch in (2, 7, 8, 9, 16, 17, 60):
        batched = np.concatenate(
            [library.predict_unchecked(rows[i : i + batch]) for i in range(0, 60, batch)]
        )
        assert np.array_equal(batched, one_by_one), batch


def _exported(library: Path) -> set[str]:
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True
    )
    return {line.split()[-1] for line in symbols.stdout.splitlines() if " T reco_" in line}


def test_both_generators_build_libraries_with_the_same_abi(
    tmp_path: Path,
) -> None:
    spec = replace(SMALL, seed=40)
    libraries = {}
    for codegen in ("flat", "tl2cgen"):
        bundle, booster = make_bundle(tmp_path / codegen, spec)
        section = build(bundle, None, codegen=codegen).section
        assert section["codegen"]["used"] == codegen
        assert read_manifest(bundle)["compiler"]["codegen"]["used"] == codegen
        libraries[codegen] = bundle / LIBRARY_FILE
    assert (
        _exported(libraries["flat"])
        == _exported(libraries["tl2cgen"])
        == {
            "reco_num_features",
            "reco_predict_dense",
        }
    )
    rows = synthetic_rows(spec, 500, np.random.default_rng(41))
    ffi = cffi.FFI()
    ffi.cdef(
        "int32_t reco_num_features(void);"
        "int32_t reco_predict_dense(const float*, int64_t, int32_t, double*);"
    )
    results = {}
    for codegen, path in libraries.items():
        lib = ffi.dlopen(str(path))
        assert lib.reco_num_features() == 9
        out = np.full(len(rows), -7.0)
        X, Y = ffi.from_buffer("float[]", rows), ffi.from_buffer("double[]", out)
        assert lib.reco_predict_dense(X, len(rows), 8, Y) == -1  # wrong width
        assert lib.reco_predict_dense(X, -1, 9, Y) == -1
        assert lib.reco_predict_dense(X, 0, 9, Y) == 0 and np.all(out == -7.0)
        assert lib.reco_predict_dense(X, len(rows), 9, Y) == 0
        results[codegen] = out
    assert np.max(np.abs(results["flat"] - booster.predict(rows))) <= 1e-6
    assert np.max(np.abs(results["flat"] - results["tl2cgen"])) <= 1e-6
