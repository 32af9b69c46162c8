"""Model backends (compiled, onnx, lightgbm) and `auto` selection by load and parity probe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reco._bundle import (
    LIBRARY_FILE,
    MODEL_FILE,
    ONNX_FILE,
    BundleError,
    read_manifest,
    verify_files,
)
from reco._cpu import missing_cpu_flags
from reco._manifest import Manifest
from reco._native import LibraryCheckError, NativeLibrary
from reco._onnx_model import OnnxModel
from reco._parity import ParityResult, compare, failure_message

logger = logging.getLogger(__name__)

BACKEND_KINDS = ("compiled", "onnx", "lightgbm")  # auto tries them in this order
_F32 = np.dtype(np.float32)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class BackendError(Exception):
    """No backend could serve the bundle; the message lists every backend's reason."""


class BackendUnavailableError(Exception):
    """One backend cannot serve this bundle; the message is the reason."""


class Backend:
    """A loaded model: .predict(rows) gives one float64 click probability per row."""

    def __init__(self, name: str, n_features: int, score: Callable[[F32], F64]) -> None:
        """A backend called name scoring rows of n_features columns with score (which may
        assume validated, non-empty rows)."""
        self.name = name
        self.n_features = n_features
        self._score = score  # a bound C-call or session method: no extra Python frame per call
        self.rejected: list[str] = []  # "kind: reason" for each backend auto skipped before this
        self.parity: ParityResult | None = None  # the load-time probe check

    def predict(self, rows: F32) -> F64:
        """Probabilities for rows: 2-D float32, C-contiguous, manifest feature order, NaN = missing.

        Raises ValueError naming the shape and dtype of anything else.
        """
        if not (
            isinstance(rows, np.ndarray)
            and rows.ndim == 2
            and rows.dtype == _F32
            and rows.flags.c_contiguous
            and rows.shape[1] == self.n_features
        ):
            raise ValueError(self._describe_bad_rows(rows))
        if rows.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return self._score(rows)

    def _describe_bad_rows(self, rows: object) -> str:
        expected = f"a 2-D float32 C-contiguous array of shape (n, {self.n_features})"
        if not isinstance(rows, np.ndarray):
            return f"rows must be {expected}, got {type(rows).__name__}"
        layout = "C-contiguous" if rows.flags.c_contiguous else "non-contiguous"
        return f"rows must be {expected}, got {layout} {rows.dtype} array of shape {rows.shape}"


def _verified(
    bundle_dir: Path, manifest: Manifest, name: str, why_absent: str, hashed: bool = True
) -> Path:
    """The path of a listed bundle file that exists; with `hashed`, its sha256 checked too."""
    path = bundle_dir / name
    if not path.is_file():
        raise BackendUnavailableError(f"{name} is missing{why_absent}")
    if name not in manifest.files:
        raise BackendUnavailableError(f"{name} is not recorded in the manifest")
    if hashed:
        try:
            verify_files(bundle_dir, manifest.files, [name])
        except BundleError as exc:
            raise BackendUnavailableError(f"corrupt file: {exc}") from exc
    return path


def _build_reason(manifest: Manifest, kind: str) -> str:
    """Why the build did not produce this backend's file, if it recorded a reason."""
    record = manifest.build_record(kind)
    return f" (build: {record['reason']})" if record.get("reason") else ""


def _open_compiled(bundle_dir: Path, manifest: Manifest) -> Backend:
    section = manifest.compiler
    if not section:
        raise BackendUnavailableError(
            "no library: the bundle was never compiled (run: python -m compiler build)"
        )
    # The library's hash is checked by NativeLibrary on the very bytes it checks as ELF.
    path = _verified(
        bundle_dir, manifest, LIBRARY_FILE, _build_reason(manifest, "compiled"), hashed=False
    )
    target = section.get("target_cpu", {})
    missing = missing_cpu_flags(target.get("required_cpu_flags", []))
    if missing is None:
        logger.warning("cannot read /proc/cpuinfo; not checking %s's CPU requirements", path)
    elif missing:
        raise BackendUnavailableError(
            f"CPU mismatch: this CPU lacks {', '.join(missing)}, which {LIBRARY_FILE} "
            f"(built with -march={target.get('march')}) may use"
        )
    try:
        library = NativeLibrary(path, expected_sha256=manifest.files[LIBRARY_FILE])
    except LibraryCheckError as exc:
        raise BackendUnavailableError(f"corrupt file, refused before dlopen: {exc}") from exc
    except OSError as exc:
        raise BackendUnavailableError(f"dlopen failed: {exc}") from exc
    return Backend("compiled", library.n_features, library.predict_unchecked)


def _open_onnx(bundle_dir: Path, manifest: Manifest) -> Backend:
    path = _verified(bundle_dir, manifest, ONNX_FILE, _build_reason(manifest, "onnx"))
    try:
        model = OnnxModel(path)
    except Exception as exc:  # onnxruntime raises its own exception types for bad models
        raise BackendUnavailableError(f"onnxruntime cannot load {ONNX_FILE}: {exc}") from exc
    return Backend("onnx", model.n_features, model.predict)


def _open_lightgbm(bundle_dir: Path, manifest: Manifest) -> Backend:
    path = _verified(bundle_dir, manifest, MODEL_FILE, "")
    booster = open_booster(model_file=path)

    def score(rows: F32) -> F64:
        return np.asarray(booster.predict(rows, num_threads=1), dtype=np.float64)

    return Backend("lightgbm", booster.num_feature(), score)


def open_booster(model_file: Path | None = None, model_text: str | None = None) -> Any:
    """A LightGBM booster from a file or its text; LightGBM is imported here, so only a
    process that serves with it (or explains) loads it. Raises BackendUnavailableError."""
    try:
        import lightgbm as lgb  # noqa: PLC0415 - see the docstring
    except ImportError as exc:
        raise BackendUnavailableError(
            f"LightGBM is not installed ({exc.name}); install the explain extra"
        ) from None
    try:
        if model_text is not None:
            return lgb.Booster(model_str=model_text)
        return lgb.Booster(model_file=str(model_file))
    except lgb.basic.LightGBMError as exc:
        raise BackendUnavailableError(f"LightGBM cannot load {MODEL_FILE}: {exc}") from exc


_OPENERS: dict[str, Callable[[Path, Manifest], Backend]] = {
    "compiled": _open_compiled,
    "onnx": _open_onnx,
    "lightgbm": _open_lightgbm,
}


def _check_probe(backend: Backend, manifest: Manifest) -> ParityResult:
    names = manifest.feature_names
    rows, expected = manifest.probe.rows, manifest.probe.probabilities
    if backend.n_features != len(names):
        raise BackendUnavailableError(
            f"model has {backend.n_features} features, manifest lists {len(names)}"
        )
    try:
        actual = backend.predict(rows)
    except Exception as exc:  # onnxruntime and LightGBM raise their own types; none may serve
        raise BackendUnavailableError(f"parity probe failed to run: {exc}") from exc
    result = compare(backend.name, expected, actual)
    if not result.passed:
        worst = result.worst_row
        raise BackendUnavailableError(
            failure_message(
                result, rows[worst], float(expected[worst]), float(actual[worst]), names
            )
        )
    return result


def load_backend(
    bundle_dir: Path | str,
    kind: str = "auto",
    manifest: Manifest | None = None,
    label: str | None = None,
) -> Backend:
    """Loads a bundle's model: the named backend, or with "auto" the first of compiled, onnx,
    lightgbm that loads and reproduces the manifest's parity probe.

    `manifest` is the bundle's manifest when the caller has already read (and verified) it;
    `label` names the bundle in messages (default: bundle_dir). Each backend skipped is logged
    with its reason and listed in .rejected; raises BackendError (every reason in the message)
    when none can serve.
    """
    if kind != "auto" and kind not in BACKEND_KINDS:
        raise ValueError(f"kind must be 'auto' or one of {list(BACKEND_KINDS)}, got {kind!r}")
    bundle_dir = Path(bundle_dir)
    label = str(bundle_dir) if label is None else label
    try:
        manifest = Manifest.parse(read_manifest(bundle_dir)) if manifest is None else manifest
    except BundleError as exc:
        raise BackendError(f"cannot load a backend from {label}: {exc}") from exc
    rejected: list[str] = []
    for name in BACKEND_KINDS if kind == "auto" else (kind,):
        try:
            backend = _OPENERS[name](bundle_dir, manifest)
            backend.parity = _check_probe(backend, manifest)
        except BackendUnavailableError as exc:
            reason = f"{name}: {exc}"
            logger.warning("backend rejected for %s: %s", label, reason)
            rejected.append(reason)
            continue
        backend.rejected = rejected
        logger.info(
            "loaded %s backend for %s (probe max abs diff %.3g over %d rows)",
            name,
            label,
            backend.parity.max_abs_diff,
            backend.parity.rows_checked,
        )
        return backend
    raise BackendError(f"no backend can serve {label}: " + "; ".join(rejected))
