"""`python -m training bench`: wall time and peak memory of generate + train, as a table."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.pipeline import METRICS_FILE

# Issue 14's bar: distributed training's held-out AUC within this of one process's, same data.
AUC_TOLERANCE = 0.005


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


def tree_peak_rss(args: Sequence[str], interval: float = 0.1) -> tuple[float, float]:
    """Runs `python -m training ARGS`; returns (wall seconds, peak MiB of the summed RSS of it
    and every process it started: a LocalCluster's scheduler, nannies and workers)."""
    import psutil  # noqa: PLC0415 - only this benchmark samples other processes

    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "training", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    root = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        total = 0
        try:
            for process in [root, *root.children(recursive=True)]:
                total += process.memory_info().rss
        except psutil.Error:
            pass  # a process ended between listing and reading it
        peak = max(peak, total)
        time.sleep(interval)  # sampling: the processes have no peak-memory report of their own
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"training {' '.join(args)} exited with {child.returncode}")
    return wall, peak / 1024**2


def compare_distributed(
    rows: int, seed: int, work_dir: Path, workers: int, rounds: int
) -> list[str]:
    """Single-machine against --dask-workers training on the same generated data, interleaved
    for `rounds` rounds; markdown rows with each run and the medians."""
    data = work_dir / f"data-{rows}"
    if not (data / "impressions.csv").is_file():
        run_measured(["generate", "--rows", str(rows), "--seed", str(seed), "--out", str(data),
                      "--no-progress"], rows, "generate")  # fmt: skip
    lines = [
        "| round | training | wall time (s) | peak RSS, all processes (MiB) | held-out AUC |",
        "|---:|---|---:|---:|---:|",
    ]
    results: dict[str, list[tuple[float, float]]] = {"single": [], "dask": []}
    aucs: dict[str, list[float]] = {"single": [], "dask": []}
    for r in range(1, rounds + 1):
        for kind in ("single", "dask"):
            bundle = work_dir / f"bundle-{rows}-{kind}-{r}"
            args = ["train", "--data", str(data), "--out", str(bundle), "--calibration", "none"]
            if kind == "dask":
                args += ["--dask-workers", str(workers)]
            wall, peak = tree_peak_rss(args)
            auc = json.loads((bundle / METRICS_FILE).read_text())["auc"]
            label = "one process" if kind == "single" else f"--dask-workers {workers}"
            lines.append(f"| {r} | {label} | {wall:.1f} | {peak:.0f} | {auc:.4f} |")
            results[kind].append((wall, peak))
            aucs[kind].append(auc)
    for kind, label in (("single", "one process"), ("dask", f"--dask-workers {workers}")):
        wall = statistics.median(w for w, _ in results[kind])
        peak = statistics.median(p for _, p in results[kind])
        lines.append(f"| median | {label} | {wall:.1f} | {peak:.0f} | |")
    gap = max(abs(d - s) for d, s in zip(aucs["dask"], aucs["single"], strict=True))
    verdict = "within" if gap <= AUC_TOLERANCE else "NOT within"
    lines.append(f"\nlargest held-out AUC difference in a round: {gap:.4f} ({verdict} "
                 f"{AUC_TOLERANCE})")  # fmt: skip
    return lines
