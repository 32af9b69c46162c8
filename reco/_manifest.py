"""The typed manifest: manifest.json parsed and checked once, then read as attributes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from reco._bundle import BundleError, check_keys
from reco._features import Encodings


@dataclass(frozen=True)
class ParityProbe:
    """Feature rows (float32, NaN = missing) and LightGBM's probabilities for them."""

    rows: npt.NDArray[np.float32] = field(repr=False)
    probabilities: npt.NDArray[np.float64] = field(repr=False)


@dataclass(frozen=True)
class Manifest:
    """What a bundle says about itself (docs/architecture.md, "The bundle"). `data` is the
    JSON object it was parsed from, for writers that add to it and for build records."""

    version: str
    created_at: str
    feature_set: str
    feature_names: tuple[str, ...]
    encodings: Encodings | None  # None for a bundle without categorical inputs (synthetic)
    default_threshold: float
    files: Mapping[str, str]
    probe: ParityProbe
    compiler: Mapping[str, Any]
    data: Mapping[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str = "manifest.json") -> Manifest:
        """Checks every key a reader relies on; raises BundleError naming the first bad one."""
        check_keys(data, where)
        names = data["feature_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BundleError(f"{where}: feature_names must be a list of names")
        threshold = data["default_threshold"]
        if not isinstance(threshold, int | float) or not 0.0 <= float(threshold) <= 1.0:
            raise BundleError(f"{where}: default_threshold must be a number from 0 to 1")
        compiler = data.get("compiler") or {}
        if not isinstance(compiler, dict):
            raise BundleError(f"{where}: compiler must be an object")
        try:
            entry = data["encodings"]
            encodings = Encodings.from_manifest(entry) if entry else None
            probe = _probe(data, len(names))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: {type(exc).__name__} in {exc}") from None
        return cls(
            version=str(data["version"]),
            created_at=str(data["created_at"]),
            feature_set=str(data["feature_set"]),
            feature_names=tuple(names),
            encodings=encodings,
            default_threshold=float(threshold),
            files=dict(data["files"]),
            probe=probe,
            compiler=compiler,
            data=data,
        )

    def build_record(self, kind: str) -> Mapping[str, Any]:
        """The compiler's record of one backend (its file, or why it was not built)."""
        record = self.compiler.get("backends", {}).get(kind, {})
        return record if isinstance(record, dict) else {}


def probe_from_manifest(
    manifest: Mapping[str, Any],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """The parity probe as (float32 rows with NaN, float64 reference probabilities)."""
    probe = manifest["parity_probe"]
    rows = np.array(
        [[math.nan if v is None else v for v in row] for row in probe["rows"]], dtype=np.float32
    )
    return rows, np.asarray(probe["probabilities"], dtype=np.float64)


def _probe(manifest: Mapping[str, Any], n_features: int) -> ParityProbe:
    rows, expected = probe_from_manifest(manifest)
    if rows.ndim != 2 or len(rows) == 0 or rows.shape[1] != n_features:
        raise ValueError(f"parity_probe: rows of shape {rows.shape}, {n_features} features")
    if expected.shape != (len(rows),):
        raise ValueError(f"parity_probe: {expected.shape} probabilities for {len(rows)} rows")
    return ParityProbe(rows, expected)
