"""The request kernel's cost per Score call by view-history length, on a sequence bundle.

    .venv/bin/python scripts/bench_history_affinity.py BUNDLE [--calls 500]

The session viewed the catalog's most connected products (the longest affinity rows: the worst
case for hist_affinity), candidates are their neighbours and random products. Prints the median
microseconds of kernel.score per (history length, candidates). Works on bundles from before the
sparse table too (a dense affinity matrix), run from that checkout (PYTHONPATH=its directory).
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from reco import SESSION_INPUTS, load_bundle


def _degrees_and_related(affinity: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each product's number of related products, and the hub's related products."""
    if hasattr(affinity, "indptr"):  # reco.SparseAffinity
        degrees = np.diff(affinity.indptr)[:n]
        hub = int(np.argmax(degrees))
        return degrees, np.asarray(affinity.neighbours(hub)[0], dtype=np.int64)
    dense = np.asarray(affinity)[:n, :n]  # a dense table, before the sparse one
    degrees = (dense != 0).sum(axis=1)
    return degrees, np.nonzero(dense[int(np.argmax(degrees))])[0].astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    bundle = args.bundle.resolve()
    loaded = load_bundle(bundle.parent, bundle, request_kernel=True)
    kernel = loaded.request_kernel
    if kernel is None:
        raise SystemExit(f"no request kernel: {loaded.request_kernel_refusal}")
    n = kernel.n_products
    degrees, related = _degrees_and_related(loaded.tables.affinity, n)
    hubs = np.argsort(-degrees, kind="stable")[:64]
    rng = np.random.default_rng(1)
    print(f"{bundle.name}: {n:,} products, longest affinity rows {degrees[hubs][:3].tolist()}\n")
    print("| viewed products | candidates | kernel.score median (us) |")
    print("|---:|---:|---:|")
    for h in (1, 8, 32, 64):
        viewed = hubs[:h].tolist()
        weights = [0.9**i for i in range(h)]
        history = struct.pack(f"<qdq{h}q{h}d", h, sum(weights), viewed[0], *viewed, *weights)
        for size in (100, 300):
            pool = np.concatenate([related[:size], rng.integers(0, n, size)])
            candidates = np.unique(pool)[:size].astype(np.int64)
            call = (
                [1.0] * len(SESSION_INPUTS),
                viewed[0],
                (viewed[1 % h], -1, -1),
                candidates,
            )
            for _ in range(50):
                kernel.score(*call, history=history)
            times = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                kernel.score(*call, history=history)
                times.append(time.perf_counter() - t0)
            print(f"| {h} | {len(candidates)} | {np.median(times) * 1e6:.0f} |")


if __name__ == "__main__":
    main()
