"""Generation at catalog scale: wall time, peak memory and file sizes of `python -m training
generate` per catalog size and row count, one fresh process each, printed as a markdown table.

Peak memory is the child's maximum resident set size from wait4 (the figure `/usr/bin/time -v`
prints as "Maximum resident set size"). Run: .venv/bin/python scripts/bench_generate.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from reco import CATALOG_FILE
from reco.settings import SettingsParser, comma_list, integer, run_cli
from training.generator import IMPRESSIONS_FILE


def measure(products: int, rows: int, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one generate run into `out`."""
    command = [sys.executable, "-m", "training", "--log-level", "WARNING", "generate",
               "--rows", str(rows), "--products", str(products), "--out", str(out),
               "--no-progress"]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"generate failed ({child.returncode}): {' '.join(command)}")
    return wall, usage.ru_maxrss / 1024  # Linux reports kilobytes


def main() -> int:
    parser = SettingsParser("scripts/bench_generate.py", __doc__ or "", env_prefix="RECO_BENCH_")
    sizes = comma_list(integer(1))
    parser.add("--products", sizes, "1000,10000,100000,1000000", "catalog sizes")
    parser.add("--rows", sizes, "15000,100000", "impression rows per run")
    args = SimpleNamespace(**parser.parse())
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    print()
    print("| products | rows | wall s | peak RSS MB | catalog.csv MB | impressions.csv MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for products in args.products:
        for rows in args.rows:
            out = Path(tempfile.mkdtemp(prefix="bench-generate-"))
            try:
                wall, peak = measure(products, rows, out)
                catalog = (out / CATALOG_FILE).stat().st_size / 1e6
                impressions = (out / IMPRESSIONS_FILE).stat().st_size / 1e6
            finally:
                shutil.rmtree(out, ignore_errors=True)
            print(f"| {products:,} | {rows:,} | {wall:.1f} | {peak:,.0f} | {catalog:.2f} | "
                  f"{impressions:.1f} |", flush=True)  # fmt: skip
    print()
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("scripts/bench_generate.py", main))
