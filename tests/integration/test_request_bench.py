"""`python -m compiler request-bench` on the default bundle: every path, its C part and counts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from compiler.__main__ import main
from compiler.request_bench import (
    RequestBenchError,
    RequestBenchOptions,
    build_paths,
    run_request_bench,
    valgrind_available,
)
from compiler.synthetic import SyntheticSpec, write_synthetic_bundle


def test_every_path_scores_the_same_request_identically(bundle: Path) -> None:
    paths, pool, info = build_paths(bundle)
    assert info["parity"] == 0.0
    for batch in (1, 9, 40, 200):
        request = pool.draw(batch)
        scores = [np.asarray(path.score(request)) for path in paths]
        for path, score in zip(paths, scores, strict=True):
            assert score.shape == (batch,)
            assert score.tobytes() == scores[0].tobytes(), path.label


def test_requests_are_fresh_and_valid(bundle: Path) -> None:
    _, pool, info = build_paths(bundle)
    drawn = [pool.draw(50) for _ in range(20)]
    assert len({r.inputs for r in drawn}) == 20
    assert len({r.candidates.tobytes() for r in drawn}) == 20
    for r in drawn:
        assert r.candidates.dtype == np.int64
        assert r.candidates.min() >= 0 and r.candidates.max() < info["n_products"]
        assert all(-1 <= i < info["n_products"] for i in (r.current, *r.previous))


def test_the_table_has_every_path_batch_and_instruction_count(bundle: Path) -> None:
    options = RequestBenchOptions(batch_sizes=(1, 20), rounds=1, callgrind_requests=20)
    text = run_request_bench(bundle, options)
    assert "load average" in text and "max abs diff 0.0e+00" in text
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    labels = {line.split(" | ")[0] for line in rows}
    assert {"| (a) numpy builder + flat library", "| (b) native rows + flat walk"} <= labels
    assert len(rows) == 2 * len(labels)
    counted = valgrind_available()  # fails here, not skips, where RECO_REQUIRE_VALGRIND is set
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[2]) > 0 and float(cells[6]) > 0  # through Python, and C only
        p99, worst = (float(v) for v in cells[5].split(" / "))
        assert float(cells[2]) <= worst and p99 <= worst
        if counted:
            assert int(cells[8].replace(",", "")) > 0
    if counted:
        assert re.search(r"The portable fold alone: [\d,]+ instructions per request", text)


def test_the_command_refuses_a_bundle_without_the_candidate_features(
    tmp_path: Path,
) -> None:
    write_synthetic_bundle(tmp_path / "b", SyntheticSpec(feature_names=("x", "y"), n_rows=300))
    assert main(["request-bench", str(tmp_path / "b")]) == 1
    with pytest.raises(RequestBenchError, match="candidate feature set"):
        build_paths(tmp_path / "b")
