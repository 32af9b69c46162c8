"""A small `training loop`: shoppers over gRPC, learn from the log, OPE, hot-reload as B, A/B."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.servers import ROOT


def test_the_loop_end_to_end(bundle: Path, workdir: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    shutil.copytree(bundle, root / "A")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "training", "loop", "--data", str(workdir / "data"),
         "--bundle-a", str(root / "A"), "--out", str(out), "--sessions-before", "150",
         "--sessions-after", "150", "--epsilon", "0.3", "--seed", "3"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert not result["errors"]  # every call the shoppers made was answered
    assert result["before"]["sessions"] == 150 and result["after"]["sessions"] == 150
    learned = result["learned"]
    assert learned["sessions"] == 150 and learned["clicks"] == result["before"]["clicks"]
    assert 0 < learned["click_rate"] < 1 and learned["attributed_purchases"] >= 0
    assert (root / "run-learned" / "model.so").is_file()  # compiled, then hot-reloaded as B
    variants = {v["variant"]: v for v in result["readout"]["variants"]}
    assert set(variants) == {"A", "B"}
    assert variants["A"]["sessions"] + variants["B"]["sessions"] == 150
    assert result["readout"]["sample_ratio"]["p_value"] > 1e-3
    assert sum(v["clicks"] for v in variants.values()) == result["after"]["clicks"]
    ope = result["ope"]
    for estimate in ope["estimates"].values():
        assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert not math.isnan(ope["true_ctr_of_target"])
    report = (out / "report.md").read_text()
    assert "Off-policy estimate of B" in report and (out / "ctr.png").stat().st_size > 0
