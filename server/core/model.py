"""A loaded, checked and warmed model bundle: everything one request needs, read-only."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from compiler import Backend, BackendError, load_backend
from server.core.errors import Unavailable
from training.bundle import BundleError, read_manifest, verify_files
from training.catalog import AFFINITY_FILE, CATALOG_FILE, Catalog, ProductTables, load_tables
from training.features import FEATURE_NAMES, Encodings

log = logging.getLogger(__name__)


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

    @property
    def n_features(self) -> int:
        """Columns of the model's input matrix."""
        return len(FEATURE_NAMES)


def load_model(bundle_dir: Path, backend_kind: str = "auto") -> LoadedModel:
    """Reads a bundle, checks its files and loads a backend that passed the parity probe.

    Raises Unavailable naming the reason when the bundle cannot be served.
    """
    resolved = bundle_dir.resolve()
    try:
        manifest = read_manifest(resolved)
        if (
            manifest["feature_set"] != "candidate"
            or tuple(manifest["feature_names"]) != FEATURE_NAMES
        ):
            raise BundleError(
                f"{resolved} was trained on feature set {manifest['feature_set']!r}; "
                "the server scores candidates and needs the 'candidate' feature set"
            )
        verify_files(resolved, manifest, [CATALOG_FILE, AFFINITY_FILE])
        catalog, tables = load_tables(resolved)
        backend = load_backend(resolved, kind=backend_kind)
    except (BundleError, BackendError, OSError, ValueError, KeyError) as exc:
        raise Unavailable(f"cannot load bundle {resolved}: {exc}") from exc
    encodings = Encodings.from_manifest(manifest["encodings"])
    codes = encodings.category.encode(catalog.categories)
    model = LoadedModel(
        bundle_dir=resolved,
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
    )
    log.info(
        "loaded bundle %s (version %s) with backend %s; rejected: %s",
        resolved,
        model.version,
        backend.name,
        list(model.rejected_backends) or "none",
    )
    return model
