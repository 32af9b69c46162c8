"""`python -m training readout`: the online A/B result per variant, from the impression log."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reco import Z95, difference, sample_ratio_p_value
from training.logs import Slots


@dataclass(frozen=True)
class VariantReadout:
    """One variant: responses, sessions, shown slots, clicks, CTR per slot with its 95%
    interval (delta method over sessions, since one shopper's slots are not independent)."""

    variant: str
    responses: int
    sessions: int
    shown: int
    clicks: int
    ctr: float
    se: float

    @property
    def low(self) -> float:
        """Lower end of the 95% interval."""
        return self.ctr - Z95 * self.se

    @property
    def high(self) -> float:
        """Upper end of the 95% interval."""
        return self.ctr + Z95 * self.se


def clustered_ratio(clicks: np.ndarray, shown: np.ndarray) -> tuple[float, float]:
    """sum(clicks) / sum(shown) over clusters, and its delta-method standard error."""
    n = len(shown)
    total = shown.sum()
    if n < 2 or total <= 0:
        return (float(clicks.sum() / total) if total else math.nan), math.nan
    ratio = clicks.sum() / total
    residual = clicks - ratio * shown
    se = math.sqrt(n / (n - 1) * float((residual**2).sum())) / total
    return float(ratio), se


def per_variant(slots: Slots) -> list[VariantReadout]:
    """The readout of every variant in the log."""
    frame = slots.frame.assign(clicked=slots.clicked.astype(np.int64))
    out = []
    for variant, part in frame.groupby("variant", sort=True):
        by_session = part.groupby("session_id").agg(shown=("slot", "size"),
                                                    clicks=("clicked", "sum"))  # fmt: skip
        ctr, se = clustered_ratio(by_session["clicks"].to_numpy(np.float64),
                                  by_session["shown"].to_numpy(np.float64))  # fmt: skip
        out.append(VariantReadout(str(variant), int(part["response"].nunique()),
                                  len(by_session), len(part), int(part["clicked"].sum()), ctr,
                                  se))  # fmt: skip
    return out


def readout(slots: Slots, shares: Mapping[str, float] | None = None,
            base: str = "A") -> dict[str, Any]:  # fmt: skip
    """Per variant, each other variant's difference from `base` (interval, p-value), and the
    sample-ratio-mismatch check of sessions against the shares (equal when not given)."""
    variants = per_variant(slots)
    by_name = {v.variant: v for v in variants}
    result: dict[str, Any] = {"variants": [v.__dict__ | {"low": v.low, "high": v.high}
                                           for v in variants]}  # fmt: skip
    reference = by_name.get(base)
    result["differences"] = {}
    if reference is not None:
        for v in variants:
            if v.variant != base:
                d = difference(reference.ctr, reference.se, v.ctr, v.se)
                result["differences"][v.variant] = {
                    "minus": base, "value": d.value, "low": d.low, "high": d.high,
                    "p_value": d.p_value,
                    "relative": d.value / reference.ctr if reference.ctr else math.nan,
                }  # fmt: skip
    names = [v.variant for v in variants]
    wanted = [float((shares or {}).get(n, 1.0)) for n in names]
    result["sample_ratio"] = {
        "sessions": {v.variant: v.sessions for v in variants},
        "expected_shares": dict(zip(names, wanted, strict=True)),
        "p_value": sample_ratio_p_value([v.sessions for v in variants], wanted),
    }
    return result


def to_markdown(result: Mapping[str, Any]) -> list[str]:
    """The readout as Markdown tables."""
    lines = [
        "| variant | responses | sessions | shown slots | clicks | CTR per slot [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for v in result["variants"]:
        lines.append(
            f"| {v['variant']} | {v['responses']} | {v['sessions']} | {v['shown']} | "
            f"{v['clicks']} | {v['ctr']:.4f} [{v['low']:.4f}, {v['high']:.4f}] |"
        )
    for name, d in result["differences"].items():
        lines.append("")
        lines.append(
            f"{name} - {d['minus']}: {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
            f"({d['relative']:+.1%} relative), p = {d['p_value']:.3g}"
        )
    srm = result["sample_ratio"]
    lines.append("")
    shares = ", ".join(f"{k} {v:g}" for k, v in srm["expected_shares"].items())
    verdict = (
        "n/a (one variant)"
        if not np.isfinite(srm["p_value"])
        else ("MISMATCH: the split is broken" if srm["p_value"] < 0.001 else "ok")
    )
    lines.append(f"Sample ratio (sessions {srm['sessions']}, shares {shares}): "
                 f"p = {srm['p_value']:.3g}, {verdict}")  # fmt: skip
    return lines


def frame_of(result: Mapping[str, Any]) -> pd.DataFrame:
    """The per-variant rows as a frame (plots)."""
    return pd.DataFrame(result["variants"])
