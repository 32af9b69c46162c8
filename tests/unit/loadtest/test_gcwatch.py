"""gcwatch: a module run under it has every collection timed into a file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loadtest.gcwatch import read_pauses

GCWATCH = Path(__file__).resolve().parents[3] / "loadtest" / "gcwatch.py"


def test_every_collection_of_the_watched_module_is_written(tmp_path: Path) -> None:
    (tmp_path / "collector.py").write_text(
        "import gc, sys\nassert sys.argv[1:] == ['--flag']\ngc.collect(0)\ngc.collect(2)\n"
    )
    pauses = tmp_path / "pauses.txt"
    result = subprocess.run(
        [sys.executable, str(GCWATCH), str(pauses), "collector", "--flag"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    recorded = read_pauses(pauses)
    assert {0, 2} <= {generation for generation, _, _ in recorded}
    assert all(seconds >= 0 and start > 0 for _, start, seconds in recorded)
