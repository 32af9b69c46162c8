"""A loaded, checked and warmed model bundle: everything one request needs, read-only."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reco import (
    AFFINITY_FILE,
    CATALOG_FILE,
    FEATURE_NAMES,
    LIBRARY_FILE,
    MODEL_FILE,
    ONNX_FILE,
    Backend,
    BackendError,
    BundleError,
    Catalog,
    Encodings,
    OutsideRootError,
    ProductTables,
    SigningKey,
    copy_verified,
    load_backend,
    load_tables,
    name_under_root,
)
from server.core.errors import Unavailable

log = logging.getLogger(__name__)

# The files a server reads after load; copied privately, the rest of the bundle only hashed.
SERVED_FILES = (LIBRARY_FILE, ONNX_FILE, MODEL_FILE, CATALOG_FILE, AFFINITY_FILE)
REQUIRED_FILES = (MODEL_FILE, CATALOG_FILE, AFFINITY_FILE)


@dataclass(frozen=True)
class LoadedModel:
    """A bundle ready to serve. Immutable: a reload builds a new one and swaps the reference."""

    bundle_dir: Path
    version: str
    manifest: dict[str, Any]
    backend: Backend
    rejected_backends: tuple[str, ...]
    encodings: Encodings
    catalog: Catalog
    tables: ProductTables
    threshold: float
    # Per-product lookups padded like ProductTables (index -1 = unknown product -> NaN), built
    # once here so a request resolves all its candidates with two numpy gathers.
    product_category_codes: npt.NDArray[np.float32] = field(repr=False)
    product_prices: npt.NDArray[np.float32] = field(repr=False)
    # Popularity from which a product counts as "popular" when explaining a recommendation.
    popular_from: float = 1.0
    # The bundle relative to the bundle root: the only name of it that clients see.
    bundle_name: str = ""
    # model.txt as verified at load (explanations use it; the bundle may change afterwards).
    model_text: str = field(default="", repr=False)
    # The key id the manifest's signature was checked with (None: signatures not checked).
    signed_by: str | None = None

    @property
    def n_features(self) -> int:
        """Columns of the model's input matrix."""
        return len(FEATURE_NAMES)


def load_model(
    bundle_dir: Path,
    backend_kind: str = "auto",
    *,
    root: Path | None = None,
    key: SigningKey | None = None,
    scratch_dir: Path | None = None,
) -> LoadedModel:
    """Reads a bundle from under `root` (default: the directory holding it), checks its
    signature when a key is given and every file it lists, and loads a backend that passed the
    parity probe, all from a private copy made in `scratch_dir` and deleted afterwards.

    Raises Unavailable naming the reason when the bundle cannot be served; its message names
    the bundle relative to the root and never holds an absolute path.
    """
    bundle_dir = bundle_dir.absolute()  # a relative path is relative to the working directory
    root = Path(os.path.realpath(root if root is not None else bundle_dir.resolve().parent))
    display = _display_name(root, bundle_dir)
    scratch = Path(tempfile.mkdtemp(prefix="bundle-", dir=scratch_dir))
    try:
        return _load_copy(root, bundle_dir, key, scratch, backend_kind)
    except (BundleError, BackendError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, OutsideRootError):
            log.error("refused bundle %s (%s): %s", bundle_dir, bundle_dir.resolve(), exc)
        message = _without_paths(str(exc), {scratch: display, bundle_dir.resolve(): display,
                                            root: "<bundle root>"})  # fmt: skip
        raise Unavailable(f"cannot load bundle {display}: {message}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _load_copy(
    root: Path, bundle_dir: Path, key: SigningKey | None, scratch: Path, backend_kind: str
) -> LoadedModel:
    copy = copy_verified(root, bundle_dir, key, scratch, SERVED_FILES)
    manifest = copy.manifest
    if manifest["feature_set"] != "candidate" or tuple(manifest["feature_names"]) != FEATURE_NAMES:
        raise BundleError(
            f"trained on feature set {manifest['feature_set']!r}; the server scores "
            "candidates and needs the 'candidate' feature set"
        )
    absent = [name for name in REQUIRED_FILES if name not in manifest["files"]]
    if absent:
        raise BundleError(f"the manifest lists no {', '.join(absent)}")
    catalog, tables = load_tables(scratch)
    backend = load_backend(scratch, kind=backend_kind, manifest=manifest, label=copy.name)
    encodings = Encodings.from_manifest(manifest["encodings"])
    codes = encodings.category.encode(catalog.categories)
    model = LoadedModel(
        bundle_dir=copy.source,
        version=str(manifest["version"]),
        manifest=manifest,
        backend=backend,
        rejected_backends=tuple(backend.rejected),
        encodings=encodings,
        catalog=catalog,
        tables=tables,
        threshold=float(manifest["default_threshold"]),
        product_category_codes=np.append(codes, np.float32(np.nan)).astype(np.float32),
        product_prices=np.append(catalog.prices, np.float32(np.nan)).astype(np.float32),
        popular_from=float(np.quantile(catalog.popularity, 0.8)) if len(catalog) else 1.0,
        bundle_name=copy.name,
        model_text=(scratch / MODEL_FILE).read_text(),
        signed_by=copy.key_id,
    )
    log.info(
        "loaded bundle %s (version %s, %s) with backend %s; rejected: %s",
        copy.source,
        model.version,
        f"signature checked with key {copy.key_id}" if copy.key_id else "signature not checked",
        backend.name,
        list(model.rejected_backends) or "none",
    )
    return model


def _display_name(root: Path, bundle_dir: Path) -> str:
    """The bundle's name relative to the root, or only its last component if it is outside."""
    real = Path(os.path.realpath(bundle_dir))
    if real != root and real.is_relative_to(root):
        return name_under_root(root, real)
    return bundle_dir.name or "."


def _without_paths(message: str, replacements: dict[Path, str]) -> str:
    """Libraries (dlopen, LightGBM, onnxruntime) put the file path in their messages; clients
    get the bundle's relative name instead. Longest paths first, so a root never eats the
    path of a bundle inside it."""
    for path in sorted(replacements, key=lambda p: len(str(p)), reverse=True):
        message = message.replace(str(path), replacements[path])
    return message
