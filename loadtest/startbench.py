"""Start-up benchmark: seconds from launch to SERVING, idle RSS and the heavy libraries mapped.

    python -m loadtest.startbench [--bundle artifacts/latest] [--baseline-dir DIR] [--rounds 5]

Starts each checkout's default server (`python -m server`, compiled backend, explanations off)
in alternating rounds, waits for SERVING on its health service, lets it idle a moment, then
reads its /proc/PID/status (VmRSS) and /proc/PID/maps (which shared libraries it loaded), and
stops it. Prints a Markdown table of the medians and of every round.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from loadtest.server_process import ManagedServer, ServerSpec, baseline_parser, checkouts
from reco.settings import integer, number, run_cli

# The libraries a serving process should not need, by a file each maps when imported.
HEAVY = {
    "pandas": "pandas/_libs",
    "matplotlib": "matplotlib/",
    "scikit-learn": "sklearn/",
    "scipy": "scipy/",
    "LightGBM": "lib_lightgbm",
    "Treelite": "libtreelite",
    "onnx (onnxmltools)": "onnx_cpp2py_export",
    "onnxruntime": "onnxruntime_pybind11_state",
}


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def heavy_libraries(pid: int) -> list[str]:
    """Which of HEAVY the process has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name, marker in HEAVY.items() if marker in maps]


def main() -> int:
    parser = baseline_parser("python -m loadtest.startbench", __doc__)
    parser.add("--rounds", integer(1), "5", "alternating starts of each checkout")
    parser.add("--idle-seconds", number(0), "2", "idle time after SERVING before reading RSS")
    args = SimpleNamespace(**parser.parse())
    logs = Path(tempfile.mkdtemp(prefix="reco-startbench-"))
    servers = checkouts(args.baseline_dir, "-m", "server")
    print(f"`python -m loadtest.startbench {' '.join(sys.argv[1:])}` on {os.cpu_count()} CPUs, "
          f"load average before {os.getloadavg()[0]:.2f}; logs in {logs}\n")  # fmt: skip
    results: dict[str, list[tuple[float, float, list[str]]]] = {label: [] for label, _ in servers}
    print("| server, round | start to SERVING (s) | idle RSS (MiB) | heavy libraries mapped |")
    print("|---|---:|---:|---|")
    for round_ in range(args.rounds):
        for label, command in servers:
            spec = ServerSpec(bundle=args.bundle.resolve(), command=command,
                              extra_args=("--watch-seconds", "0"))  # fmt: skip
            started = time.perf_counter()
            with ManagedServer(spec, logs / f"{round_}-{label.split()[0]}.log") as running:
                ready = time.perf_counter() - started
                time.sleep(args.idle_seconds)  # a benchmark, not a test: let it go idle
                rss, heavy = rss_mib(running.pid), heavy_libraries(running.pid)
            results[label].append((ready, rss, heavy))
            print(f"| {label}, {round_ + 1} | {ready:.2f} | {rss:.0f} | "
                  f"{', '.join(heavy) or 'none'} |", flush=True)  # fmt: skip
    print("\n| server | median start to SERVING (s) | median idle RSS (MiB) | rounds |")
    print("|---|---:|---:|---:|")
    for label, rows in results.items():
        ready = statistics.median(r[0] for r in rows)
        rss = statistics.median(r[1] for r in rows)
        print(f"| {label} | {ready:.2f} | {rss:.0f} | {len(rows)} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} (1 / 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m loadtest.startbench", main))
