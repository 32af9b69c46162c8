"""What an attacker (or a broken pipeline) does to a bundle: signed copies, replaced files with
the manifest updated to match, and a model.so whose constructor runs code at dlopen."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from reco import MANIFEST_FILE, SIGNATURE_FILE, SigningKey
from tests.integration.compiler_support import copy_bundle

# A library with the reco entry points and a constructor that writes a marker file: if the
# marker exists, the library was dlopened in that process.
MALICIOUS_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
__attribute__((constructor)) static void payload(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("constructor ran\n", f); fclose(f); }
}
int32_t reco_num_features(void) { return 27; }
int32_t reco_predict_dense(const float *X, int64_t n, int32_t c, double *out) {
    (void)X; (void)c;
    for (int64_t i = 0; i < n; i++) out[i] = 0.5;
    return 0;
}
"""


def fixed_key(name: str = "test") -> SigningKey:
    """A deterministic key for tests (never a real secret)."""
    return SigningKey(hashlib.sha256(name.encode()).hexdigest().encode(), f"test key {name}")


def write_key_file(path: Path, key: SigningKey) -> Path:
    """The key in a file, owner-only, as `training keygen` writes it."""
    path.write_bytes(key.secret + b"\n")
    path.chmod(0o600)
    return path


def sign(bundle: Path, key: SigningKey) -> None:
    """Signs the manifest exactly as it is on disk (what training and the compiler do)."""
    (bundle / SIGNATURE_FILE).write_bytes(key.sign((bundle / MANIFEST_FILE).read_bytes()))


def signed_copy(source: Path, target: Path, key: SigningKey, version: str | None = None) -> Path:
    """A copy of a bundle under another version name, signed with `key`."""
    copy_bundle(source, target)
    (target / SIGNATURE_FILE).unlink(missing_ok=True)
    if version is not None:
        manifest = json.loads((target / MANIFEST_FILE).read_text())
        manifest["version"] = version
        (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    sign(target, key)
    return target


def replace_file(bundle: Path, name: str, data: bytes, update_manifest: bool = True) -> None:
    """Writes a bundle file; with update_manifest, records its new sha256 in the manifest, as
    someone who can write the bundle directory can (the signature then no longer matches)."""
    (bundle / name).write_bytes(data)
    if update_manifest:
        manifest = json.loads((bundle / MANIFEST_FILE).read_text())
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
        (bundle / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def malicious_library(work: Path, marker: Path) -> bytes:
    """Compiles the constructor library; returns its bytes."""
    source = work / "payload.c"
    source.write_text(MALICIOUS_SOURCE)
    out = work / "payload.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", f'-DMARKER="{marker}"', "-o", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()
