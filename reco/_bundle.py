"""The model bundle on disk: file names, manifest read/write and the sha256 of its files."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reco._signing import SIGNATURE_FILE, SignatureError, SigningKey

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.txt"
LIBRARY_FILE = "model.so"
ONNX_FILE = "model.onnx"
# Training feature rows (float32) the compiler annotates branches with and checks parity on.
TRAIN_SAMPLE_FILE = "train_sample.npy"
FORMAT_VERSION = 1

# Keys every manifest carries once training has written it (the compiler adds "compiler").
REQUIRED_KEYS = (
    "format_version",
    "version",
    "created_at",
    "feature_set",
    "feature_names",
    "encodings",
    "default_threshold",
    "parity_probe",
    "files",
)


class BundleError(Exception):
    """A bundle directory is missing, incomplete or does not match its manifest."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(bundle_dir: Path, names: Iterable[str]) -> dict[str, str]:
    """{file name: sha256} for the named files of a bundle."""
    return {name: sha256_file(bundle_dir / name) for name in sorted(names)}


def read_manifest(bundle_dir: Path, key: SigningKey | None = None) -> dict[str, Any]:
    """Reads and minimally validates a bundle's manifest.json; with a key, its signature first."""
    path = bundle_dir / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{bundle_dir} has no {MANIFEST_FILE}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from exc
    if key is not None:
        signature = bundle_dir / SIGNATURE_FILE
        try:
            key.verify(data, signature.read_bytes() if signature.is_file() else None)
        except SignatureError as exc:
            raise BundleError(f"{bundle_dir}: {exc}") from exc
    return parse_manifest(data, str(path))


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A manifest from its bytes, with every required key and a known format; `where` names it
    in messages."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{where} is not a JSON object")
    check_keys(manifest, where)
    return manifest


def check_keys(manifest: Mapping[str, Any], where: str) -> None:
    """Every required key, a known format, and files as a {name: sha256} object."""
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{where} lacks {', '.join(missing)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{where} has format_version {manifest['format_version']}, expected {FORMAT_VERSION}"
        )
    files = manifest["files"]
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise BundleError(f"{where}: files must map file names to sha256")


def write_manifest(
    bundle_dir: Path, manifest: dict[str, Any], key: SigningKey | None = None
) -> None:
    """Writes manifest.json atomically (temp file + rename), so readers never see half of it,
    then its signature with `key`. Without a key, a signature left from before is removed: it
    no longer matches, and an unsigned bundle says plainly that it is unsigned."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"
    _write_atomically(bundle_dir, MANIFEST_FILE, text.encode())
    if key is None:
        (bundle_dir / SIGNATURE_FILE).unlink(missing_ok=True)
    else:
        _write_atomically(bundle_dir, SIGNATURE_FILE, key.sign(text.encode()))


def _write_atomically(bundle_dir: Path, name: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=bundle_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp creates the file owner-only; a bundle is read by other users (the server).
        Path(tmp).chmod(0o644)
        Path(tmp).replace(bundle_dir / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_files(bundle_dir: Path, recorded: Mapping[str, str], names: Iterable[str]) -> None:
    """Raises BundleError naming the first listed file that is missing or whose hash differs
    from `recorded` (the manifest's files: {name: sha256}), by file name: messages may reach
    clients, which must not learn server paths."""
    for name in names:
        path = bundle_dir / name
        if name not in recorded:
            raise BundleError(f"{name} is not recorded in {MANIFEST_FILE}")
        if not path.is_file():
            raise BundleError(f"{name} is missing")
        actual = sha256_file(path)
        if actual != recorded[name]:
            raise BundleError(
                f"{name} sha256 {actual[:12]}... != manifest {recorded[name][:12]}..."
            )


def probe_to_manifest(
    rows: npt.NDArray[np.float32], probabilities: npt.ArrayLike
) -> dict[str, Any]:
    """The manifest's parity_probe: feature rows (NaN as null) and LightGBM's probabilities."""
    as_lists = [[None if math.isnan(v) else v for v in row] for row in rows.astype(float).tolist()]
    return {
        "rows": as_lists,
        "probabilities": np.asarray(probabilities, dtype=np.float64).tolist(),
    }
