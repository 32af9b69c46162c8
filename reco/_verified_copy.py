"""A bundle read the way a server must: from inside its root, the signature checked first,
every listed file hashed, and the files it serves from copied into a private directory, so
what was checked is exactly what gets loaded (nobody can swap or truncate a file in between).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reco._bundle import MANIFEST_FILE, BundleError, parse_manifest
from reco._signing import SIGNATURE_FILE, SignatureError, SigningKey

# No bundle file comes near this; a larger one is refused before it fills the disk.
MAX_FILE_BYTES = 1 << 30
MAX_MANIFEST_BYTES = 64 << 20
# Listed files are plain names inside the bundle directory: no paths, no hidden files.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO never blocks
_CHUNK = 1 << 20


class OutsideRootError(BundleError):
    """A bundle path that does not resolve to a directory inside the bundle root."""


@dataclass(frozen=True)
class VerifiedCopy:
    """A bundle that passed every check, and where its served files were copied."""

    source: Path  # the real path of the bundle directory, inside the root
    name: str  # the same relative to the root: the only name clients see
    manifest: dict[str, Any]
    directory: Path  # the private copy (its owner deletes it)
    key_id: str | None  # the key its manifest is signed with, when one was required


def resolve_under_root(root: Path, path: Path) -> Path:
    """The real path (symlinks resolved) of a bundle directory inside `root` (itself a real
    path); a relative `path` is taken relative to the root. Raises OutsideRootError."""
    real = Path(os.path.realpath(root / path))
    if real == root or not real.is_relative_to(root):
        raise OutsideRootError("resolves outside the bundle root")
    if not real.is_dir():
        raise OutsideRootError("is not a bundle directory under the bundle root")
    return real


def name_under_root(root: Path, real: Path) -> str:
    """How clients see a bundle: its path relative to the root."""
    return real.relative_to(root).as_posix()


def copy_verified(
    root: Path,
    path: Path,
    key: SigningKey | None,
    destination: Path,
    copy: Collection[str],
) -> VerifiedCopy:
    """Checks the bundle at `path` and copies the listed files named in `copy` to
    `destination` (an existing private directory); raises BundleError saying what failed.

    Every file is opened relative to the bundle directory's descriptor without following
    symlinks, so a directory swapped after the root check cannot redirect a read. With a key,
    manifest.json must carry its valid signature; then every file the manifest lists must
    exist as a regular file with the recorded sha256 (hashed while it is copied, so the copy
    is what was hashed)."""
    real = resolve_under_root(root, path)
    directory = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if Path(f"/proc/self/fd/{directory}").readlink() != real:
            raise OutsideRootError("changed while it was being opened")
        manifest_bytes = _read_small(directory, MANIFEST_FILE)
        if key is not None:
            try:
                key.verify(manifest_bytes, _read_if_present(directory, SIGNATURE_FILE))
            except SignatureError as exc:
                raise BundleError(str(exc)) from None
        manifest = parse_manifest(manifest_bytes, MANIFEST_FILE)
        for name, digest in sorted(manifest["files"].items()):
            if not isinstance(name, str) or not _FILE_NAME.fullmatch(name):
                raise BundleError(f"{MANIFEST_FILE} lists {str(name)[:64]!r}, not a file name")
            target = destination / name if name in copy else None
            _copy_hashed(directory, name, str(digest), target)
        (destination / MANIFEST_FILE).write_bytes(manifest_bytes)
    finally:
        os.close(directory)
    return VerifiedCopy(
        real, name_under_root(root, real), manifest, destination, key.key_id if key else None
    )


def _open_regular(directory: int, name: str) -> tuple[int, int]:
    """(descriptor, size) of a regular file in the directory; raises BundleError."""
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=directory)
    except FileNotFoundError:
        raise BundleError(f"{name} is missing") from None
    except OSError as exc:  # ELOOP for a symlink
        raise BundleError(f"{name} cannot be opened as a plain file: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BundleError(f"{name} is not a regular file")
    return fd, info.st_size


def _read_small(directory: int, name: str) -> bytes:
    fd, size = _open_regular(directory, name)
    with os.fdopen(fd, "rb") as handle:
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{name} is {size} bytes, above {MAX_MANIFEST_BYTES}")
        return handle.read(MAX_MANIFEST_BYTES + 1)


def _read_if_present(directory: int, name: str) -> bytes | None:
    return _read_small(directory, name) if _exists(directory, name) else None


def _exists(directory: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _copy_hashed(directory: int, name: str, expected: str, target: Path | None) -> None:
    fd, size = _open_regular(directory, name)
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(os.fdopen(fd, "rb"))
        if size > MAX_FILE_BYTES:
            raise BundleError(f"{name} is {size} bytes, above the {MAX_FILE_BYTES} allowed")
        out = None
        if target is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            out = stack.enter_context(os.fdopen(os.open(target, flags, 0o600), "wb"))
        total = 0
        while chunk := source.read(_CHUNK):
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise BundleError(f"{name} grew beyond {MAX_FILE_BYTES} bytes while read")
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
    actual = digest.hexdigest()
    if actual != expected:
        raise BundleError(f"{name} sha256 {actual[:12]}... != manifest {expected[:12]}...")
