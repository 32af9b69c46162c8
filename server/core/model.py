"""A loaded, checked and warmed model bundle: everything one request needs, read-only."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reco import (
    CANDIDATE_SETS,
    FEATURE_SETS,
    Backend,
    BackendError,
    BackendUnavailableError,
    BundleError,
    CandidateInputs,
    Catalog,
    Encodings,
    Explainer,
    OutsideRootError,
    ProductTables,
    RequestKernel,
    RequestKernelError,
    SequenceTables,
    SessionContext,
    SigningKey,
    build_features,
    catalog_columns,
    load_bundle,
    name_under_root,
    sequence_inputs,
    session_inputs,
)
from server.core.errors import Unavailable
from server.core.native import check_against_builder
from server.core.retrieval import RetrievalIndex

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


# The most popular in-stock products a cold start picks from (its 50 best-scored, skipping
# excluded ones): scored once at load, not the whole catalog. A request excluding all of them
# gets an empty cold start.
COLD_START_HEAD = 10_000


@dataclass(frozen=True)
class ColdStart:
    """What an unknown session is shown, computed once per model: the COLD_START_HEAD most
    popular in-stock products, most popular first, and the model's score of each for a
    session it knows nothing about."""

    by_popularity: I64
    scores: F64
    position: I64  # each catalog product's place in by_popularity (-1: not there)


@dataclass(frozen=True)
class Listing:
    """The catalog's text and prices as Python lists, built once per model: an answer reads
    a few products' fields, and each numpy scalar read and str() costs more than the read."""

    product_ids: list[str]
    names: list[str]
    categories: list[str]
    subcategories: list[str]
    prices: list[float]

    @classmethod
    def of(cls, catalog: Catalog) -> Listing:
        return cls(catalog.product_ids.tolist(), catalog.names.tolist(),
                   catalog.categories.tolist(), catalog.subcategories.tolist(),
                   catalog.prices.tolist())  # fmt: skip


@dataclass(frozen=True)
class LoadedModel:
    """A bundle ready to serve. Immutable: a reload builds a new one and swaps the reference.
    Build it with LoadedModel.prepare, which computes the per-model lookups once."""

    bundle_dir: Path
    version: str
    backend: Backend
    rejected_backends: tuple[str, ...]
    encodings: Encodings
    catalog: Catalog
    tables: ProductTables
    threshold: float
    feature_names: tuple[str, ...]
    files: Mapping[str, str]  # the manifest's sha256 of every file
    created_at: str
    # Per-product lookups padded like ProductTables (index -1 = unknown product -> NaN), built
    # once here so a request resolves all its candidates with two numpy gathers.
    product_category_codes: npt.NDArray[np.float32] = field(repr=False)
    product_prices: npt.NDArray[np.float32] = field(repr=False)
    in_stock_pool: I64 = field(repr=False)  # catalog indices of the products in stock
    pool_position: I64 = field(repr=False)  # each product's place in in_stock_pool (-1: none)
    cold_start: ColdStart = field(repr=False)
    listing: Listing = field(repr=False)
    # The lists retrieval reads for a catalog above --catalog-limit (server/core/retrieval.py).
    retrieval: RetrievalIndex = field(repr=False)
    # Popularity from which a product counts as "popular" when explaining a recommendation.
    popular_from: float = 1.0
    # The bundle relative to the bundle root: the only name of it that clients see.
    bundle_name: str = ""
    # The key id the manifest's signature was checked with (None: signatures not checked).
    signed_by: str | None = None
    # Built at load from the verified model.txt when explanations are enabled, else None.
    explainer: Explainer | None = field(default=None, repr=False)
    # model.so's request kernel when Score and Recommend take the native path (checked at
    # load against the numpy builder, server/core/native.py); None: the python path.
    kernel: RequestKernel | None = field(default=None, repr=False)
    # The manifest's feature set (one of reco.CANDIDATE_SETS) and, for "sequence", its tables.
    feature_set: str = "candidate"
    sequence_tables: SequenceTables | None = field(default=None, repr=False)

    @property
    def n_features(self) -> int:
        """Columns of the model's input matrix."""
        return len(self.feature_names)

    @property
    def scoring_path(self) -> str:
        """ "native" (the request kernel) or "python" (the numpy builder and the backend)."""
        return "python" if self.kernel is None else "native"

    def rows(self, context: SessionContext, candidates: CandidateInputs) -> F32:
        """The model's input rows for one context and its candidates: the shared builder of
        the bundle's feature set, as training ran it."""
        session = session_inputs(context, self.encodings, self.catalog)
        sequence = None
        if self.sequence_tables is not None:
            sequence = sequence_inputs(context, self.catalog, self.sequence_tables, len(candidates))
        return build_features(session, candidates, self.tables, self.feature_set, sequence)

    @classmethod
    def prepare(
        cls,
        *,
        backend: Backend,
        encodings: Encodings,
        catalog: Catalog,
        tables: ProductTables,
        threshold: float,
        version: str,
        bundle_dir: Path = Path(),
        bundle_name: str = "",
        files: Mapping[str, str] | None = None,
        created_at: str = "",
        rejected_backends: tuple[str, ...] = (),
        signed_by: str | None = None,
        explainer: Explainer | None = None,
        kernel: RequestKernel | None = None,
        feature_set: str = "candidate",
    ) -> LoadedModel:
        """The model with everything that depends only on it computed now, not per request:
        padded lookups, the sequence tables, the in-stock pool and the cold-start ranking
        (scored by `backend`)."""
        if feature_set not in CANDIDATE_SETS:
            raise ValueError(f"cannot serve feature set {feature_set!r}")
        codes, prices = catalog_columns(encodings, catalog)
        in_stock = np.flatnonzero(catalog.in_stock).astype(np.int64)
        popular = in_stock[np.argsort(-catalog.popularity[in_stock], kind="stable")]
        head = popular[:COLD_START_HEAD]
        # The subcategory codes and affinities: the sequence set's features, and retrieval's
        # intent subcategories for either set.
        subcategories = SequenceTables.build(catalog, tables)
        sequence_tables = subcategories if feature_set == "sequence" else None
        retrieval = RetrievalIndex.build(catalog, tables.affinity, popular,
                                         subcategories.subcategory,
                                         subcategories.subcategory_affinity)  # fmt: skip
        model = cls(
            bundle_dir=bundle_dir,
            version=version,
            backend=backend,
            rejected_backends=rejected_backends,
            encodings=encodings,
            catalog=catalog,
            tables=tables,
            threshold=threshold,
            feature_names=FEATURE_SETS[feature_set],
            files=dict(files or {}),
            created_at=created_at,
            product_category_codes=codes,
            product_prices=prices,
            in_stock_pool=in_stock,
            pool_position=_positions(in_stock, len(catalog)),
            cold_start=ColdStart(head, np.empty(0), _positions(head, len(catalog))),
            listing=Listing.of(catalog),
            popular_from=float(np.quantile(catalog.popularity, 0.8)) if len(catalog) else 1.0,
            bundle_name=bundle_name,
            signed_by=signed_by,
            explainer=explainer,
            kernel=kernel,
            feature_set=feature_set,
            sequence_tables=sequence_tables,
            retrieval=retrieval,
        )
        # Cold start: the popular products scored once for a session the model knows nothing of.
        rows = model.rows(SessionContext(), CandidateInputs(codes[head], prices[head], head))
        cold = ColdStart(head, backend.predict(rows), model.cold_start.position)
        return replace(model, cold_start=cold)


def _positions(pool: I64, n_products: int) -> I64:
    """Each catalog product's position in `pool`, -1 when it is not there; padded like the
    product tables, so NO_PRODUCT (-1) reads the padding."""
    position = np.full(n_products + 1, -1, dtype=np.int64)
    position[pool] = np.arange(len(pool))
    return position


def load_model(
    bundle_dir: Path,
    backend_kind: str = "auto",
    *,
    root: Path | None = None,
    key: SigningKey | None = None,
    scratch_dir: Path | None = None,
    explain: bool = False,
    scoring_path: str = "auto",
) -> LoadedModel:
    """Reads a bundle from under `root` (default: the directory holding it) with
    reco.load_bundle (signature, every listed file's hash, ELF checks, parity probe, all from
    a private copy in `scratch_dir`), then prepares it; with `explain`, LightGBM's booster is
    built now from the verified model.txt.

    scoring_path (--scoring-path): "native" needs model.so's request kernel to open, pass
    the probe exactly and match the numpy builder (server/core/native.py), else the bundle
    is refused; "auto" uses it when it can and logs one line saying why not when it cannot;
    "python" never opens it.

    Raises Unavailable naming the reason when the bundle cannot be served; its message names
    the bundle relative to the root and never holds an absolute path.
    """
    bundle_dir = bundle_dir.absolute()  # a relative path is relative to the working directory
    root = Path(os.path.realpath(root if root is not None else bundle_dir.resolve().parent))
    display = _display_name(root, bundle_dir)
    # The private copy (reco.load_bundle makes it under scratch_dir) reads as the bundle.
    scratch = os.path.realpath(scratch_dir or tempfile.gettempdir())

    def clean(message: str) -> str:
        message = re.sub(re.escape(scratch) + r"/bundle-[^/\s]+", display, message)
        return _without_paths(message, {bundle_dir.resolve(): display, root: "<bundle root>"})

    try:
        bundle = load_bundle(
            root,
            bundle_dir,
            key=key,
            backend=backend_kind,
            feature_sets=CANDIDATE_SETS,
            keep_model_text=explain,
            scratch_dir=scratch_dir,
            request_kernel=scoring_path != "python",
        )
        manifest = bundle.manifest
        explainer = None
        if bundle.model_text is not None:
            explainer = Explainer(bundle.model_text, manifest.feature_names)
        model = LoadedModel.prepare(
            backend=bundle.backend,
            encodings=bundle.encodings,
            catalog=bundle.catalog,
            tables=bundle.tables,
            threshold=manifest.default_threshold,
            version=manifest.version,
            bundle_dir=bundle.source,
            bundle_name=bundle.name,
            files=manifest.files,
            created_at=manifest.created_at,
            rejected_backends=tuple(bundle.backend.rejected),
            signed_by=bundle.signed_by,
            explainer=explainer,
            kernel=bundle.request_kernel,
            feature_set=manifest.feature_set,
        )
    except (BundleError, BackendError, BackendUnavailableError, OSError, ValueError) as exc:
        if isinstance(exc, OutsideRootError):
            log.error("refused bundle %s (%s): %s", bundle_dir, bundle_dir.resolve(), exc)
        raise Unavailable(f"cannot load bundle {display}: {clean(str(exc))}") from exc
    model = _choose_scoring_path(model, scoring_path, display, clean(bundle.request_kernel_refusal))
    log.info(
        "loaded bundle %s (version %s, %s) with backend %s, %s scoring path; rejected: %s; "
        "explanations %s",
        bundle.source,
        model.version,
        f"signature checked with key {bundle.signed_by}" if bundle.signed_by else
        "signature not checked",
        model.backend.name,
        model.scoring_path,
        list(model.rejected_backends) or "none",
        "on" if explainer else "off",
    )  # fmt: skip
    return model


def _choose_scoring_path(model: LoadedModel, requested: str, display: str,
                         refusal: str) -> LoadedModel:  # fmt: skip
    """The model on the scoring path `requested` allows (see load_model); the native one only
    once its kernel matches the numpy builder. Raises Unavailable for --scoring-path native
    on a bundle the kernel cannot serve."""
    if requested == "python":
        return model
    if model.kernel is not None:
        try:
            check_against_builder(model)
        except RequestKernelError as exc:
            refusal = str(exc)
            model = replace(model, kernel=None)
    if model.kernel is not None:
        return model
    if requested == "native":
        raise Unavailable(
            f"--scoring-path native: bundle {display} cannot be scored natively ({refusal}); "
            "use --scoring-path auto or python"
        )
    log.warning("bundle %s scores on the python path (numpy builder): %s", display, refusal)
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
