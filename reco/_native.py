"""The compiled model library: checks model.so, opens it with cffi, scores float32 batches."""

from __future__ import annotations

import hashlib
import platform
import struct
import sys
from pathlib import Path

import cffi
import numpy as np
import numpy.typing as npt

_FFI = cffi.FFI()
_FFI.cdef(
    """
    int32_t reco_num_features(void);
    int32_t reco_predict_dense(const float* X, int64_t n_rows, int32_t n_cols, double* out);
    """
)
# Bound once: attribute lookups cost a measurable fraction of a one-row call.
_from_buffer = _FFI.from_buffer


# A generated model library is a few MB at most; far beyond that is not one of ours.
MAX_LIBRARY_BYTES = 256 * 1024 * 1024
_ELF_HEADER = struct.Struct("16sHHIQQQIHHHHHH")  # Elf64_Ehdr after e_ident's 16 bytes
_PROGRAM_HEADER = struct.Struct("IIQQQQQQ")  # Elf64_Phdr
_SECTION_HEADER_SIZE = 64  # sizeof(Elf64_Shdr)
_ET_DYN = 3
_PT_LOAD, _PT_DYNAMIC = 1, 2
# e_machine of the CPUs this could run on (platform.machine() -> ELF EM_* value).
_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "ppc64le": 21,
             "s390x": 22, "riscv64": 243}  # fmt: skip


class LibraryCheckError(OSError):
    """model.so is not a whole shared library for this machine, or not the one the manifest
    hashed; the message says what is wrong."""


def check_library(data: bytes, name: str, expected_sha256: str | None = None) -> None:
    """Checks a shared library's bytes before anyone maps them: its size, the ELF identity
    (64-bit, this byte order, a shared object for this CPU), that every program header's file
    range lies inside the file (dlopen maps those ranges: a truncated library would SIGBUS the
    process on first touch) and, if given, its sha256. Raises LibraryCheckError."""
    size = len(data)
    if size > MAX_LIBRARY_BYTES:
        raise LibraryCheckError(f"{name} is {size} bytes, above the {MAX_LIBRARY_BYTES} allowed")
    if size < _ELF_HEADER.size or data[:4] != b"\x7fELF":
        raise LibraryCheckError(f"{name} is not an ELF file ({size} bytes)")
    byte_order = b"\x01" if sys.byteorder == "little" else b"\x02"
    if data[4:5] != b"\x02" or data[5:6] != byte_order or data[6:7] != b"\x01":
        raise LibraryCheckError(f"{name} is not a 64-bit {sys.byteorder}-endian ELF file")
    endian = "<" if sys.byteorder == "little" else ">"
    header = struct.Struct(endian + _ELF_HEADER.format).unpack_from(data)
    e_type, e_machine, e_phoff, e_shoff = header[1], header[2], header[5], header[6]
    e_phentsize, e_phnum, e_shentsize, e_shnum = header[9], header[10], header[11], header[12]
    if e_type != _ET_DYN:
        raise LibraryCheckError(f"{name} is not a shared library (ELF type {e_type})")
    machine = _MACHINES.get(platform.machine().lower())
    if machine is not None and e_machine != machine:
        raise LibraryCheckError(
            f"{name} is built for ELF machine {e_machine}, this CPU ({platform.machine()}) "
            f"needs {machine}"
        )
    if e_phentsize != _PROGRAM_HEADER.size or e_phnum == 0:
        raise LibraryCheckError(f"{name} has no valid program header table")
    _within(name, "its program header table", e_phoff, e_phnum * e_phentsize, size)
    if e_shnum:
        if e_shentsize != _SECTION_HEADER_SIZE:
            raise LibraryCheckError(f"{name} has section headers of {e_shentsize} bytes")
        _within(name, "its section header table", e_shoff, e_shnum * e_shentsize, size)
    program_header = struct.Struct(endian + _PROGRAM_HEADER.format)
    kinds = set()
    for index in range(e_phnum):
        p_type, _, p_offset, _, _, p_filesz, p_memsz, _ = program_header.unpack_from(
            data, e_phoff + index * e_phentsize
        )
        kinds.add(p_type)
        _within(name, f"segment {index}", p_offset, p_filesz, size)
        if p_type == _PT_LOAD and p_filesz > p_memsz:
            raise LibraryCheckError(f"{name}: segment {index} is larger on disk than in memory")
    if not {_PT_LOAD, _PT_DYNAMIC} <= kinds:
        raise LibraryCheckError(f"{name} has no loadable dynamic segments")
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise LibraryCheckError(
                f"{name} sha256 {actual[:12]}... != manifest {expected_sha256[:12]}..."
            )


def _within(name: str, what: str, offset: int, length: int, size: int) -> None:
    if offset + length > size:
        raise LibraryCheckError(
            f"{name} is truncated or corrupt: {what} spans bytes {offset}-{offset + length} "
            f"of a {size}-byte file"
        )


def read_checked_library(path: Path, expected_sha256: str | None = None) -> bytes:
    """The library's bytes after check_library (reading at most MAX_LIBRARY_BYTES + 1)."""
    with path.open("rb") as handle:
        data = handle.read(MAX_LIBRARY_BYTES + 1)
    check_library(data, path.name, expected_sha256)
    return data


class NativeLibrary:
    """A loaded model library. Calls release the GIL (cffi does so for every C call)."""

    def __init__(self, path: Path, expected_sha256: str | None = None) -> None:
        """Checks the file (check_library, with its sha256 if given), then dlopens it; raises
        OSError (LibraryCheckError for a bad file) if it cannot be loaded or lacks the entry
        point. The caller keeps the file from changing between the check and dlopen (the server
        loads from its private copy of the bundle)."""
        read_checked_library(path, expected_sha256)
        try:
            self._lib = _FFI.dlopen(str(path))
            self._predict = self._lib.reco_predict_dense
            self.n_features = int(self._lib.reco_num_features())
        except AttributeError as exc:  # cffi reports a missing symbol as AttributeError
            raise OSError(f"{path.name} lacks the reco entry point: {exc}") from exc
        self.path = path

    def predict_unchecked(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probabilities for rows that the caller has validated (2-D float32 C-contiguous, width
        n_features). The output array is the only array allocated (plus two small cffi views
        of the buffers)."""
        n_rows = rows.shape[0]
        out = np.empty(n_rows, dtype=np.float64)
        status = self._predict(
            _from_buffer("float[]", rows), n_rows, self.n_features, _from_buffer("double[]", out)
        )
        if status != 0:
            raise RuntimeError(f"reco_predict_dense refused a batch of shape {rows.shape}")
        return out
