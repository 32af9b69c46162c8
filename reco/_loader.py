"""load_bundle: a bundle checked the way a server must, read into what scoring needs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reco._backends import Backend, load_backend
from reco._bundle import LIBRARY_FILE, MODEL_FILE, ONNX_FILE, BundleError
from reco._catalog import (
    AFFINITY_CSV_FILE,
    AFFINITY_FILES,
    CATALOG_FILE,
    Catalog,
    ProductTables,
    load_tables,
)
from reco._cpu import cpu_flags
from reco._features import FEATURE_SETS, Encodings
from reco._manifest import Manifest
from reco._request_kernel import RequestKernel, RequestKernelError, bundle_request_kernel
from reco._signing import SigningKey
from reco._verified_copy import copy_verified

# The files a server reads after the checks; copied privately, the rest of the bundle only hashed.
SERVED_FILES = (LIBRARY_FILE, ONNX_FILE, MODEL_FILE, CATALOG_FILE, *AFFINITY_FILES,
                AFFINITY_CSV_FILE)  # fmt: skip
REQUIRED_FILES = (MODEL_FILE, CATALOG_FILE)


@dataclass(frozen=True)
class Bundle:
    """A bundle that passed every check: signature, hashes, ELF, parity probe."""

    source: Path  # its real path, inside the root
    name: str  # relative to the root: the only name clients see
    manifest: Manifest
    encodings: Encodings  # the manifest's, always present in a servable bundle
    backend: Backend
    catalog: Catalog
    tables: ProductTables
    signed_by: str | None  # the key id its signature was checked with (None: not checked)
    # model.txt as hashed at load, when asked for (an explainer builds its booster from it).
    model_text: str | None = field(default=None, repr=False)
    # model.so's request kernel over the bundle's tables, parity-checked, when asked for and
    # usable; else None and, when asked for, why not.
    request_kernel: RequestKernel | None = field(default=None, repr=False)
    request_kernel_refusal: str = ""


def load_bundle(
    root: Path,
    path: Path,
    *,
    key: SigningKey | None = None,
    backend: str = "auto",
    feature_sets: Sequence[str] | None = None,
    keep_model_text: bool = False,
    scratch_dir: Path | None = None,
    request_kernel: bool = False,
) -> Bundle:
    """Reads the bundle at `path` from under `root` (a real path): with a key, its signature
    first; then every file it lists is hashed while the served ones are copied into a private
    directory in `scratch_dir`, and everything is loaded from that copy (deleted afterwards),
    the backend (`auto` or a kind) only once it reproduces the parity probe.

    `feature_sets`: the feature sets the caller scores (reco.FEATURE_SETS names); a bundle
    trained on another, or whose feature names are not its set's, is refused.
    `request_kernel`: also open model.so's request kernel (reco.bundle_request_kernel) when
    the backend is the compiled one; a kernel that cannot serve is no error, its reason is
    the Bundle's request_kernel_refusal.
    Raises BundleError, BackendError, OSError or ValueError saying what failed (file names
    relative to the bundle; the caller names the bundle itself)."""
    scratch = Path(tempfile.mkdtemp(prefix="bundle-", dir=scratch_dir))
    try:
        copy = copy_verified(root, path, key, scratch, SERVED_FILES)
        manifest = Manifest.parse(copy.manifest)
        if feature_sets is not None:
            check_feature_set(manifest, feature_sets)
        if manifest.encodings is None:
            raise BundleError("the manifest holds no encodings (category, device, traffic)")
        absent = [name for name in REQUIRED_FILES if name not in manifest.files]
        sparse = all(name in manifest.files for name in AFFINITY_FILES)
        if not sparse and AFFINITY_CSV_FILE not in manifest.files:
            absent.append(f"{' and '.join(AFFINITY_FILES)} (or a legacy {AFFINITY_CSV_FILE})")
        if absent:
            raise BundleError(f"the manifest lists no {', '.join(absent)}")
        catalog, tables = load_tables(scratch)
        model = load_backend(scratch, kind=backend, manifest=manifest, label=copy.name)
        text = (scratch / MODEL_FILE).read_text() if keep_model_text else None
        kernel, refusal = None, ""
        if request_kernel and model.name != "compiled":
            refusal = f"the backend is {model.name}; the request kernel lives in {LIBRARY_FILE}"
        elif request_kernel:
            try:
                kernel = bundle_request_kernel(
                    scratch / LIBRARY_FILE,
                    manifest,
                    manifest.encodings,
                    catalog,
                    tables,
                    cpu_flags(),
                )
            except RequestKernelError as exc:
                refusal = str(exc)
        return Bundle(copy.source, copy.name, manifest, manifest.encodings, model, catalog, tables,
                      copy.key_id, text, kernel, refusal)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_feature_set(manifest: Manifest, feature_sets: Sequence[str]) -> None:
    """Raises BundleError unless the manifest's feature set is one of these, with its names."""
    name = manifest.feature_set
    if name not in feature_sets:
        raise BundleError(
            f"trained on feature set {name!r} ({len(manifest.feature_names)} features); this "
            f"server scores the feature sets {list(feature_sets)}"
        )
    if manifest.feature_names != FEATURE_SETS[name]:
        raise BundleError(
            f"the manifest's feature_names ({len(manifest.feature_names)}) are not those of "
            f"the {name} feature set ({len(FEATURE_SETS[name])}) of this runtime"
        )
