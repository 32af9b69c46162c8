"""The ceiling benchmark's pure parts: shares of py-spy samples, ratios over rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import ceiling


def test_frame_shares_count_a_function_once_per_stack(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "run (a.py:1);Handlers.score (h.py:2);rank (r.py:3) 6\n"
        "run (a.py:1);Handlers.score (h.py:2);Handlers.score (h.py:9) 3\n"
        "run (a.py:1);EpollSelector.select (s.py:4) 1\n"
        "a line py-spy did not finish\n"
    )
    total, shares = ceiling.frame_shares(raw)
    assert total == 10
    assert shares["Handlers.score"] == pytest.approx(0.9)  # recursion counted once
    assert shares["rank"] == pytest.approx(0.6)
    assert shares["EpollSelector.select"] == pytest.approx(0.1)
    assert shares["native_scores"] == 0.0
    table = ceiling.profile_table([("unary", raw), ("stream", raw)])
    assert "| unary (10 samples) | stream (10 samples) |" in table
    assert "| 90.0% | 90.0% |" in table


def test_ratios_are_medians_of_each_rounds_ratio() -> None:
    def run(calls: int, cpu_s: float) -> ceiling.Run:
        return ceiling.Run(calls=[(1.0, b"")] * calls, seconds=1.0, server_cpu_s=cpu_s)

    ours = [run(100, 0.05), run(100, 0.04), run(100, 0.09)]
    ceiling_runs = [run(200, 0.05), run(200, 0.04), run(100, 0.03)]
    assert ceiling.ratio(ours, ceiling_runs, cpu=True) == pytest.approx(2.0)  # 2, 2, 3
    assert ceiling.ratio(ours, ceiling_runs, cpu=False) == pytest.approx(0.5)  # 0.5, 0.5, 1
