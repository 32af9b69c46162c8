"""Helpers for the compiler's integration tests: synthetic bundles, builds and check rows."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest

from compiler.build import BuildOptions, BuildResult, build_bundle
from compiler.synthetic import SyntheticSpec, write_synthetic_bundle

F32 = npt.NDArray[np.float32]

# Small enough to compile in about a second; the production shape is SyntheticSpec's default.
SMALL = SyntheticSpec(
    feature_names=tuple(f"f{i}" for i in range(9)), n_rows=2000, n_trees=25, sample_rows=1000
)


def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the whole session: identical synthetic models compile once."""
    return tmp_path_factory.getbasetemp() / "compiler-cache"


def make_bundle(root: Path, spec: SyntheticSpec) -> tuple[Path, lgb.Booster]:
    """Writes a synthetic bundle under root; returns its directory and booster."""
    bundle = root / f"bundle-seed{spec.seed}-{spec.n_trees}t-d{spec.max_depth}"
    booster = write_synthetic_bundle(bundle, spec)
    return bundle, booster


def build(bundle: Path, cache_dir: Path | None, **changes: Any) -> BuildResult:
    """Compiles a bundle with default options (plus changes)."""
    return build_bundle(bundle, replace(BuildOptions(cache_dir=cache_dir, jobs=2), **changes))


def copy_bundle(source: Path, destination: Path) -> Path:
    """An independent copy of a bundle, to damage in one test without touching others."""
    shutil.copytree(source, destination)
    return destination


def threshold_rows_from_dump(booster: lgb.Booster, base: F32) -> F32:
    """For every numeric split threshold t in booster.dump_model(), rows with that feature at the
    largest float32 <= t (t itself when representable) and at the next float32 up, over a few
    base rows. Written independently of compiler.check_rows on purpose."""
    thresholds: set[tuple[int, float]] = set()

    def walk(node: dict[str, Any]) -> None:
        if "split_index" not in node:
            return
        if node["decision_type"] == "<=":
            thresholds.add((int(node["split_feature"]), float(node["threshold"])))
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    rows = []
    for k, (feature, threshold) in enumerate(sorted(thresholds)):
        with np.errstate(over="ignore"):
            at = np.float32(threshold)
            if float(at) > threshold:
                at = np.nextafter(at, np.float32(-np.inf))
            above = np.nextafter(at, np.float32(np.inf))
        for value in (at, above):
            for b in range(3):
                row = base[(3 * k + b) % len(base)].copy()
                row[feature] = value
                rows.append(row)
    return np.ascontiguousarray(np.stack(rows), dtype=np.float32)
