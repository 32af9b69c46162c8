"""`python -m training bench`: wall time and peak memory of generate + train, as a table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.pipeline import METRICS_FILE


@dataclass(frozen=True)
class StepCost:
    """One child process: what it ran, how long it took, its peak resident memory."""

    rows: int
    step: str
    wall_seconds: float
    peak_rss_mb: float


def run_measured(args: Sequence[str], rows: int, step: str) -> StepCost:
    """Runs `python -m training ARGS` as a child and reads its own rusage (ru_maxrss, KiB)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "training", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{step} for {rows} rows exited with {child.returncode}")
    return StepCost(rows, step, wall, usage.ru_maxrss / 1024)


def benchmark(row_counts: Sequence[int], seed: int, work_dir: Path) -> list[str]:
    """Generates and trains each size in work_dir; returns markdown table lines."""
    lines = [
        "| rows | step | wall time (s) | peak RSS (MiB) | held-out AUC |",
        "|---:|---|---:|---:|---:|",
    ]
    for rows in row_counts:
        data, bundle = work_dir / f"data-{rows}", work_dir / f"bundle-{rows}"
        if bundle.exists():
            raise FileExistsError(f"{bundle} exists; use an empty --work-dir")
        generate = run_measured(
            [
                "generate",
                "--rows",
                str(rows),
                "--seed",
                str(seed),
                "--out",
                str(data),
                "--no-progress",
            ],
            rows,
            "generate",
        )
        train = run_measured(["train", "--data", str(data), "--out", str(bundle)], rows, "train")
        auc = json.loads((bundle / METRICS_FILE).read_text())["auc"]
        for cost, note in ((generate, ""), (train, f"{auc:.4f}")):
            lines.append(
                f"| {cost.rows:,} | {cost.step} | {cost.wall_seconds:.1f} "
                f"| {cost.peak_rss_mb:.0f} | {note} |"
            )
    return lines
