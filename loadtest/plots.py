"""PNG plots of a run: latency over time and the latency histogram (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np

from loadtest import latency
from loadtest.latency import Samples, TimeSeries

LATENCY_OVER_TIME_FILE = "latency_over_time.png"
HISTOGRAM_FILE = "latency_histogram.png"
CAPACITY_FILE = "capacity.png"
# Scatter at most this many points; beyond that the picture is the same and the file is slower.
MAX_SCATTER_POINTS = 20_000
_DPI = 110


def latency_over_time(
    samples: Samples,
    series: TimeSeries,
    warmup_s: float,
    total_s: float,
    path: Path,
    title: str,
) -> Path:
    """Each OK request's latency (from intended send) against its intended send time.

    Lines show per-second p50 and p99; failed and dropped requests are marked along the top;
    the warm-up (excluded from results) is shaded.
    """
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ok = samples.status == latency.OK
    x, y = samples.intended_s[ok], samples.latency_s[ok] * 1e3
    if len(x) > MAX_SCATTER_POINTS:
        pick = np.random.default_rng(0).choice(len(x), MAX_SCATTER_POINTS, replace=False)
        x, y = x[pick], y[pick]
    ax.scatter(x, y, s=2, alpha=0.3, color="tab:blue", label="request (OK)")
    centres = np.asarray(series.bucket_start_s) + 0.5
    ax.plot(centres, series.p50_ms, color="tab:green", label="p50 per second")
    ax.plot(centres, series.p99_ms, color="tab:red", label="p99 per second")
    failed = ~ok
    if np.any(failed):
        top = np.nanmax(y) if len(y) else 1.0
        ax.scatter(
            samples.intended_s[failed],
            np.full(int(failed.sum()), top * 1.05),
            marker="x",
            s=12,
            color="black",
            label="error / dropped",
        )
    if warmup_s > 0:
        ax.axvspan(0, warmup_s, color="grey", alpha=0.15, label="warm-up (excluded)")
    ax.set_yscale("log")
    ax.set_xlabel("intended send time (s)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title(title)
    # The offered rate on a second axis: a ramp or a stall reads at a glance.
    rate_axis = ax.twinx()
    starts = np.asarray(series.bucket_start_s)
    if len(starts) > 1:
        width = float(starts[1] - starts[0])
        # The last bucket may be cut short by the end of the run.
        covered = np.clip(np.minimum(starts + width, total_s) - starts, 1e-9, width)
        rate = np.asarray(series.requests) / covered
        rate_axis.step(
            np.append(starts, min(starts[-1] + width, total_s)),
            np.append(rate, rate[-1]),
            where="post",
            color="grey",
            linewidth=0.8,
            label="offered rate (right axis)",
        )
    rate_axis.set_ylabel("requests/s scheduled")
    rate_axis.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    rate_handles, rate_labels = rate_axis.get_legend_handles_labels()
    ax.legend(
        handles + rate_handles,
        labels + rate_labels,
        loc="upper left",
        bbox_to_anchor=(1.08, 1.0),
        fontsize="small",
    )
    return _save(fig, path)


def latency_histogram(
    latencies_ms: Mapping[str, Sequence[float] | np.ndarray], path: Path, title: str
) -> Path:
    """Histogram of request latency on log-spaced bins, one outline per labelled set.

    Vertical lines mark p50/p99/p99.9 when there is a single set.
    """
    fig, ax = plt.subplots(figsize=(8, 4.5))
    finite = {k: np.asarray(v, dtype=float) for k, v in latencies_ms.items()}
    finite = {k: v[np.isfinite(v) & (v > 0)] for k, v in finite.items()}
    everything = np.concatenate(list(finite.values())) if finite else np.zeros(0)
    if everything.size:
        bins = np.geomspace(everything.min(), everything.max() * 1.0001 + 1e-9, 60)
        for label, values in finite.items():
            ax.hist(values, bins=bins.tolist(), histtype="step", linewidth=1.5, label=label)
        if len(finite) == 1:
            stats = latency.percentiles(everything)
            marks = (
                ("p50", stats.p50, ":"),
                ("p99", stats.p99, "--"),
                ("p99.9", stats.p99_9, "-."),
            )
            for name, value, style in marks:
                ax.axvline(value, linestyle=style, color="grey", label=f"{name} {value:.3g} ms")
        ax.set_xscale("log")
        ax.legend(fontsize="small")
    ax.set_xlabel("request latency (ms, log)")
    ax.set_ylabel("requests")
    ax.set_title(title)
    return _save(fig, path)


def capacity_curve(
    rates: Sequence[float],
    p50_ms: Sequence[float],
    p99_ms: Sequence[float],
    passed: Sequence[bool],
    path: Path,
    title: str,
) -> Path:
    """Request latency percentiles against the offered rate, failing steps marked."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    order = np.argsort(rates)
    r = np.asarray(rates, dtype=float)[order]
    ax.plot(r, np.asarray(p50_ms, dtype=float)[order], marker="o", label="p50")
    ax.plot(r, np.asarray(p99_ms, dtype=float)[order], marker="o", label="p99")
    failed = ~np.asarray(passed, dtype=bool)[order]
    if np.any(failed):
        ax.scatter(
            r[failed],
            np.asarray(p99_ms, dtype=float)[order][failed],
            s=80,
            facecolors="none",
            edgecolors="red",
            label="SLO breached",
        )
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("request latency (ms, log)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def run_plots(
    samples: Samples, series: TimeSeries, warmup_s: float, total_s: float, out_dir: Path
) -> list[Path]:
    """Both plots of one run (warm-up and whole length in seconds), written into out_dir."""
    measured = latency.measured_window(samples, warmup_s)
    ok = measured.status == latency.OK
    return [
        latency_over_time(
            samples,
            series,
            warmup_s,
            total_s,
            out_dir / LATENCY_OVER_TIME_FILE,
            "Request latency (from intended send time)",
        ),
        latency_histogram(
            {"measured window": measured.latency_s[ok] * 1e3},
            out_dir / HISTOGRAM_FILE,
            "Request latency (from intended send time)",
        ),
    ]
