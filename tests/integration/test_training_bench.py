"""The bench command: real child processes per step, one table row each (timing not asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import main


def test_bench_command_prints_a_table_row_per_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--rows", "600", "--work-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("| rows | step | wall time (s) | peak RSS (MiB)")
    steps = [line.split("|")[2].strip() for line in table[2:]]
    assert steps == ["generate", "train"]
    assert (tmp_path / "bundle-600" / "manifest.json").is_file()
