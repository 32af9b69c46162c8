"""Toolchain facts: target flags, required CPU flags, cpuinfo parsing, the build cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler.cache import BuildCache, cache_key
from compiler.toolchain import cflags, find_cc, required_cpu_flags
from reco import cpu_flags, cpu_model, missing_cpu_flags

CPUINFO = """processor\t: 0
model name\t: Test CPU 9000
flags\t\t: fpu sse sse2 avx2 bmi2
"""

needs_gcc = pytest.mark.skipif(find_cc("gcc") is None, reason="gcc is not installed")


def test_cflags_never_use_fast_math_and_name_the_target() -> None:
    assert cflags("portable", "O3") == [
        "-O3",
        "-fPIC",
        "-std=gnu99",
        "-ffp-contract=off",
        "-march=x86-64",
        "-mtune=generic",
    ]
    assert cflags("native", "O2")[-1] == "-march=native"
    with pytest.raises(ValueError, match="'arm'"):
        cflags("arm", "O3")
    with pytest.raises(ValueError, match="'fast'"):
        cflags("portable", "fast")


@needs_gcc
def test_portable_build_needs_only_baseline_x86_64() -> None:
    assert set(required_cpu_flags("gcc", "portable")) <= {"mmx", "sse", "sse2"}


@needs_gcc
def test_native_build_needs_flags_this_cpu_has() -> None:
    required = required_cpu_flags("gcc", "native")
    assert set(required_cpu_flags("gcc", "portable")) <= set(required)
    assert missing_cpu_flags(required) in ([], None)


def test_cpuinfo_parsing(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert cpu_flags(info) == frozenset({"fpu", "sse", "sse2", "avx2", "bmi2"})
    assert cpu_model(info) == "Test CPU 9000"
    assert missing_cpu_flags(["sse2", "avx512f", "avx2", "abm"], info) == ["abm", "avx512f"]
    assert missing_cpu_flags(["sse2"], tmp_path / "absent") is None


def test_cache_key_is_canonical() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_cache_store_lookup_and_corruption(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "cache")
    artifact = tmp_path / "model.so"
    artifact.write_bytes(b"library bytes")
    assert cache.lookup("k1") is None
    cache.store("k1", {"model.so": artifact}, {"backends": {"compiled": {"status": "ok"}}})
    found = cache.lookup("k1")
    assert found is not None
    entry, meta = found
    assert (entry / "model.so").read_bytes() == b"library bytes"
    assert meta["backends"] == {"compiled": {"status": "ok"}} and "model.so" in meta["files"]
    (entry / "model.so").write_bytes(b"tampered")
    assert cache.lookup("k1") is None
    cache.store("k1", {"model.so": artifact}, {})  # replaces the corrupt entry
    assert cache.lookup("k1") is not None
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    assert json.loads((entry / "meta.json").read_text())["files"]


def test_cache_write_failure_is_not_fatal(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    artifact = tmp_path / "model.so"
    artifact.write_bytes(b"x")
    BuildCache(blocked / "cache").store("k", {"model.so": artifact}, {})  # logs, no exception
