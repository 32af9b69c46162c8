"""A Platt-calibrated bundle, compiled: every backend serves the calibrated probability."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from reco import FEATURE_SETS, load_backend, probe_from_manifest, read_manifest


def run(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("calibrated")
    data = root / "data"
    run(
        "training", "generate", "--rows", "3000", "--seed", "3", "--out", str(data), "--no-progress"
    )
    calibrated, plain = root / "platt", root / "plain"
    for out, how in ((calibrated, "platt"), (plain, "none")):
        run("training", "train", "--data", str(data), "--out", str(out), "--calibration", how)
    run("compiler", "build", str(calibrated))
    return calibrated, plain


@pytest.mark.parametrize("kind", ["compiled", "onnx", "lightgbm"])
def test_every_backend_serves_the_calibrated_reference(
    bundles: tuple[Path, Path], kind: str
) -> None:
    calibrated, plain = bundles
    manifest = read_manifest(calibrated)
    step = manifest["calibration"]
    assert step["method"] == "platt"
    rows, _ = probe_from_manifest(manifest)
    sample = np.load(calibrated / "train_sample.npy")[:2000]
    every = np.vstack([rows, sample])
    raw = lgb.Booster(model_file=str(plain / "model.txt")).predict(every, raw_score=True)
    reference = 1 / (1 + np.exp(-(step["a"] * raw + step["b"])))
    served = load_backend(calibrated, kind).predict(np.ascontiguousarray(every, np.float32))
    tolerance = 1e-4 if kind == "onnx" else 1e-6
    np.testing.assert_allclose(served, reference, rtol=0, atol=tolerance)
    assert len(manifest["feature_names"]) == len(FEATURE_SETS["sequence"])  # the default set
