"""The committed gRPC stubs match what protos/ generates today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated, "protoc generated nothing"
    # Package __init__.py files need only exist: reco/__init__.py is the runtime's API.
    stale = [
        str(rel)
        for rel in generated
        if not (ROOT / rel).is_file()
        or (
            rel.name != "__init__.py" and (ROOT / rel).read_bytes() != (tmp_path / rel).read_bytes()
        )
    ]
    assert not stale, f"stubs are stale, run `make protos`: {stale}"
