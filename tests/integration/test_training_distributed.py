"""Distributed training on a 2-worker LocalCluster from CSV partitions: the same split and a
held-out AUC within 0.005 of single-machine training on the same data, and a bundle the
compiler builds (its parity gates included)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.integration.servers import ROOT
from training.benchmark import AUC_TOLERANCE

PARTS = 4


def write_partitions(data: Path, out: Path) -> Path:
    """impressions.csv cut into PARTS row ranges under out/impressions/, catalog and
    generation.json beside them (what a data pipeline writing partitions would leave)."""
    (out / "impressions").mkdir(parents=True)
    frame = pd.read_csv(data / "impressions.csv", dtype=str, keep_default_na=False,
                        na_values=[""])  # fmt: skip
    n = len(frame)
    for i in range(PARTS):
        part = frame.iloc[i * n // PARTS : (i + 1) * n // PARTS]
        part.to_csv(out / "impressions" / f"part-{i}.csv", index=False, lineterminator="\n")
    for name in ("catalog.csv", "generation.json"):
        shutil.copy(data / name, out / name)
    return out


def test_two_workers_train_the_same_bundle_within_0005_auc(
    bundle: Path, workdir: Path, tmp_path: Path
) -> None:
    parts = write_partitions(workdir / "data", tmp_path / "parts")
    out = tmp_path / "dask-bundle"
    for args in (["training", "train", "--data", str(parts), "--out", str(out),
                  "--dask-workers", "2"], ["compiler", "build", str(out)]):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    single = json.loads((bundle / "metrics.json").read_text())
    dask = json.loads((out / "metrics.json").read_text())
    assert dask["rows"] == single["rows"]  # the same clean rows and the same split
    assert abs(dask["auc"] - single["auc"]) <= AUC_TOLERANCE, (dask["auc"], single["auc"])
    manifest = json.loads((out / "manifest.json").read_text())
    where = manifest["training"]["distributed"]
    assert (where["workers"], where["partitions"], where["input_files"]) == (2, PARTS, PARTS)
    assert manifest["feature_names"] == json.loads((bundle / "manifest.json").read_text())[
        "feature_names"]  # fmt: skip
    assert manifest["compiler"]["backends"]["compiled"]  # built and parity-checked
