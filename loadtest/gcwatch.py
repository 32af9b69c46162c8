"""Runs a Python module (e.g. the server) with every garbage collection timed, for benchmarks.

    python loadtest/gcwatch.py PAUSES_FILE MODULE [ARGS...]

Imports MODULE from the current directory first (as `python -m MODULE` does), so it times any
checkout's server the same way. At exit it writes one line per collection to PAUSES_FILE:
"<generation> <start> <seconds>", start on time.perf_counter's clock (CLOCK_MONOTONIC on Linux,
shared by every process). Samples are kept in arrays, which the collector does not scan.
"""

from __future__ import annotations

import atexit
import gc
import runpy
import sys
import time
from array import array
from pathlib import Path
from typing import Any


def install(path: Path) -> None:
    """Times every collection from now on and writes them to `path` at exit."""
    generations = array("b")
    starts = array("d")
    seconds = array("d")
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            generations.append(info["generation"])
            starts.append(started[0])
            seconds.append(time.perf_counter() - started[0])

    def write() -> None:
        with path.open("w") as out:
            rows = zip(generations, starts, seconds, strict=True)
            out.writelines(f"{g} {t:.6f} {s:.6f}\n" for g, t, s in rows)

    gc.callbacks.append(callback)
    atexit.register(write)


def read_pauses(path: Path) -> list[tuple[int, float, float]]:
    """The (generation, start, seconds) triples written by a watched process."""
    pauses = []
    for line in path.read_text().splitlines():
        generation, start, seconds = line.split()
        pauses.append((int(generation), float(start), float(seconds)))
    return pauses


def main() -> None:
    """Entry point: gcwatch.py PAUSES_FILE MODULE [ARGS...]."""
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    path, module = Path(sys.argv[1]), sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    sys.path[0] = str(Path.cwd())  # instead of this script's directory, as `python -m` would
    install(path)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
