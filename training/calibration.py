"""Device and traffic-source logit offsets fitted so segment click rates match the notebook's."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.behaviour import DEVICES, TRAFFIC_SOURCES, Customers, PageViews, World, simulate

F64 = npt.NDArray[np.float64]

# The reference notebook's click rates (share of rows with recommendation_clicked = 1).
TARGET_OVERALL = 0.438
TARGET_DEVICE = {"Desktop": 0.520, "Tablet": 0.389, "Mobile": 0.387}
TARGET_TRAFFIC = {
    "Direct": 0.529,
    "Email": 0.490,
    "Paid": 0.428,
    "Organic": 0.416,
    "Social": 0.395,
}

# A large internal sample with its own fixed seed: the offsets depend on the catalog only,
# never on the caller's seed or row count.
CALIBRATION_SEED = 20_261_122
CALIBRATION_SESSIONS = 240_000  # enough that the fitted rates hold to ~0.1 point
CALIBRATION_CUSTOMERS = 48_000
CALIBRATION_CHUNK = 20_000
RAKING_ROUNDS = 200
TOLERANCE = 1e-7


@dataclass(frozen=True)
class Offsets:
    """Logit offsets by device (DEVICES order) and traffic source (TRAFFIC_SOURCES order)."""

    device: F64
    traffic: F64

    def to_report(self) -> dict[str, dict[str, float]]:
        """Readable form for the generation report."""
        return {
            "device": {d: round(float(v), 6) for d, v in zip(DEVICES, self.device, strict=True)},
            "traffic_source": {
                t: round(float(v), 6) for t, v in zip(TRAFFIC_SOURCES, self.traffic, strict=True)
            },
        }


LOGIT_STEP = 1 / 256  # logits are binned this finely before fitting; the error is negligible


@dataclass(frozen=True)
class _Binned:
    """The sample compressed to (device, traffic, logit bin) cells with row counts."""

    device: npt.NDArray[np.int64]
    traffic: npt.NDArray[np.int64]
    logit: F64
    weight: F64

    @classmethod
    def of(cls, pages: Iterable[PageViews]) -> _Binned:
        """Bins chunk by chunk, so the sample never has to be in memory at once."""
        cells, counts = [], []
        for page in pages:
            keys = np.stack(
                [page.device, page.traffic, np.rint(page.logit / LOGIT_STEP).astype(np.int64)],
                axis=1,
            )
            chunk_cells, chunk_counts = np.unique(keys, axis=0, return_counts=True)
            cells.append(chunk_cells)
            counts.append(chunk_counts)
        merged, inverse = np.unique(np.concatenate(cells), axis=0, return_inverse=True)
        weight = np.bincount(inverse.ravel(), np.concatenate(counts)).astype(np.float64)
        return cls(merged[:, 0], merged[:, 1], merged[:, 2] * LOGIT_STEP, weight)


def _solve_segment(logit: F64, weight: F64, target: float) -> float:
    """The offset c with weighted mean(sigmoid(logit + c)) == target (Newton, monotone)."""
    c = 0.0
    total = weight.sum()
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(logit + c)))
        gap = float((weight * p).sum() / total) - target
        if abs(gap) < TOLERANCE:
            break
        c -= gap / max(float((weight * p * (1.0 - p)).sum() / total), 1e-9)
    return c


def fit_offsets(pages: Iterable[PageViews]) -> Offsets:
    """Raking in logit space: alternately fit device then traffic offsets to the expected rates.

    The click probabilities (not sampled clicks) are matched, so the fit has no Bernoulli noise.
    """
    binned = _Binned.of(pages)
    device_target = np.array([TARGET_DEVICE[d] for d in DEVICES])
    traffic_target = np.array([TARGET_TRAFFIC[t] for t in TRAFFIC_SOURCES])
    device = np.zeros(len(DEVICES))
    traffic = np.zeros(len(TRAFFIC_SOURCES))
    for _ in range(RAKING_ROUNDS):
        before = np.concatenate([device, traffic])
        shifted = binned.logit + traffic[binned.traffic]
        for d in range(len(DEVICES)):
            rows = binned.device == d
            device[d] = _solve_segment(shifted[rows], binned.weight[rows], device_target[d])
        shifted = binned.logit + device[binned.device]
        for t in range(len(TRAFFIC_SOURCES)):
            rows = binned.traffic == t
            traffic[t] = _solve_segment(shifted[rows], binned.weight[rows], traffic_target[t])
        if np.abs(np.concatenate([device, traffic]) - before).max() < TOLERANCE:
            break
    # Only device + traffic sums are identified; put the shared level on the device side.
    level = float(traffic.mean())
    return Offsets(device=device + level, traffic=traffic - level)


def calibrate(world: World) -> Offsets:
    """Offsets for this catalog, fitted on the internal sample (deterministic, a few seconds)."""
    customers = Customers.draw(
        world, CALIBRATION_CUSTOMERS, np.random.default_rng(CALIBRATION_SEED)
    )

    def chunks() -> Iterator[PageViews]:
        for index, first in enumerate(range(0, CALIBRATION_SESSIONS, CALIBRATION_CHUNK)):
            sessions = np.arange(first, min(first + CALIBRATION_CHUNK, CALIBRATION_SESSIONS))
            rng = np.random.default_rng([CALIBRATION_SEED, index])
            yield simulate(world, customers, sessions.astype(np.int64), rng)

    return fit_offsets(chunks())
