"""Our IPS, SNIPS and DR against Open Bandit Pipeline's IPW, SNIPW and DR on the same log.

obp supports Python < 3.11 only and pins its own stack, so it runs in its own interpreter
(RECO_OBP_PYTHON, a venv .ci/run makes); without it the test is skipped, unless
RECO_REQUIRE_OBP=1 (CI), where that is a failure."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.unit.training.test_ope import simulated
from training.ope import estimate

HERE = Path(__file__).resolve().parent


def obp_python() -> str:
    python = os.environ.get("RECO_OBP_PYTHON", "")
    if python and Path(python).exists():
        return python
    message = "Open Bandit Pipeline's interpreter is not set up (RECO_OBP_PYTHON)"
    if os.environ.get("RECO_REQUIRE_OBP"):
        pytest.fail(message + " and RECO_REQUIRE_OBP is set")
    pytest.skip(message)


def test_point_estimates_match_open_bandit_pipeline(tmp_path: Path) -> None:
    python = obp_python()
    slates, _, _ = simulated(seed=11, n=3000, m=12)
    ours = estimate(slates, resamples=50)
    n, k = slates.logged.shape
    m = 12
    # one obp round per (response, slot); the reward model over every action in every slot
    rows = np.repeat(np.arange(n), k)
    q = np.zeros((n * k, m, k))
    slot = np.tile(np.arange(k), n)
    q[np.arange(n * k), slates.logged.ravel(), slot] = slates.q_logged.ravel()
    q[np.arange(n * k), slates.target.ravel(), slot] = slates.q_target.ravel()
    path = tmp_path / "log.npz"
    np.savez(
        path, n_actions=m, len_list=k, action=slates.logged.ravel(), position=slot,
        reward=slates.clicks.ravel(), pscore=slates.propensity.ravel(),
        targets=slates.target, q=q, rows=rows,
    )  # fmt: skip
    done = subprocess.run([python, str(HERE / "obp_reference.py"), str(path)],
                          capture_output=True, text=True, check=False, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs["ipw"] == pytest.approx(ours["IPS"].value, rel=1e-9)
    assert theirs["snipw"] == pytest.approx(ours["SNIPS"].value, rel=1e-9)
    assert theirs["dr"] == pytest.approx(ours["DR"].value, rel=1e-9)
