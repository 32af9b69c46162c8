"""python -m server.recallbench on the default bundle: whole recall when retrieval keeps the pool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.servers import ROOT


def _table(bundle: Path, data: Path, sizes: str) -> dict[int, tuple[float, float]]:
    """Recall and served share per retrieval size, read from the printed table."""
    result = subprocess.run(
        [sys.executable, "-m", "server.recallbench", "--bundle", str(bundle), "--data", str(data),
         "--sessions", "60", "--retrieval-sizes", sizes],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "60 held-out page views (of " in result.stdout
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            rows[int(cells[0])] = (float(cells[2]), float(cells[3]))
    return rows


def test_recall_is_whole_when_retrieval_keeps_the_pool_and_sane_below(
    bundle: Path, workdir: Path
) -> None:
    rows = _table(bundle, workdir / "data", "20,300")
    # 300 holds every eligible product of the ~190 in stock: nothing can be missed.
    assert rows[300] == (1.0, 1.0)
    # 20 candidates of ~190: retrieval still finds most of the exhaustive top 10, and the served
    # top 10 never holds more of it than the candidates do.
    recall, served = rows[20]
    assert 0.5 < recall < 1.0 and served <= recall
