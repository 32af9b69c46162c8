"""model.so checks before dlopen, on a real library built here and damaged copies of it."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

import pytest

from reco import LibraryCheckError, NativeLibrary, check_library


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    work = tmp_path_factory.mktemp("lib")
    source = work / "lib.c"
    source.write_text(
        "#include <stdint.h>\n"
        "int32_t reco_num_features(void) { return 3; }\n"
        "int32_t reco_predict_dense(const float *x, int64_t n, int32_t c, double *o) {\n"
        "  for (int64_t i = 0; i < n; i++) o[i] = x[i * c]; return 0; }\n"
    )
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(work / "lib.so"), str(source)],
                   check=True)  # fmt: skip
    return (work / "lib.so").read_bytes()


def test_a_whole_library_passes_with_its_hash(library: bytes, tmp_path: Path) -> None:
    check_library(library, "model.so", hashlib.sha256(library).hexdigest())
    path = tmp_path / "model.so"
    path.write_bytes(library)
    assert NativeLibrary(path, hashlib.sha256(library).hexdigest()).n_features == 3


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, 0.99])
def test_a_truncated_library_is_refused(library: bytes, keep: float) -> None:
    with pytest.raises(LibraryCheckError, match="truncated or corrupt"):
        check_library(library[: int(len(library) * keep)], "model.so")


def test_a_hash_mismatch_is_refused(library: bytes) -> None:
    with pytest.raises(LibraryCheckError, match="sha256"):
        check_library(library, "model.so", "0" * 64)


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0, "<B", 0, "not an ELF file"),
        (4, "<B", 1, "64-bit"),  # ELFCLASS32
        (5, "<B", 2, "little-endian"),  # big-endian
        (16, "<H", 2, "not a shared library"),  # ET_EXEC
        (18, "<H", 40, "ELF machine 40"),  # ARM
        (54, "<H", 32, "program header table"),  # wrong e_phentsize
        (32, "<Q", 1 << 40, "truncated or corrupt"),  # program headers beyond the file
    ],
)
def test_a_damaged_header_is_refused(
    library: bytes, offset: int, fmt: str, value: int, message: str
) -> None:
    with pytest.raises(LibraryCheckError, match=message):
        check_library(patched(library, offset, fmt, value), "model.so")


def test_tiny_files_and_not_elf_are_refused(tmp_path: Path) -> None:
    for data in (b"", b"\x7fELF", b"#!/bin/sh\n" * 10):
        with pytest.raises(LibraryCheckError):
            check_library(data, "model.so")
    path = tmp_path / "model.so"
    path.write_bytes(b"not an ELF file")
    with pytest.raises(LibraryCheckError, match="not an ELF file"):
        NativeLibrary(path)
