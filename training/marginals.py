"""Device and traffic-source logit offsets fitted so segment click rates match the notebook's.

Clicks drive the sessions (a clicked product is the next page), so the offsets shape the very
sample they are fitted on: the fit is repeated on a fresh simulation under the previous round's
offsets until they settle. The same final sample gives the context-free ceiling's table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.behaviour import (
    DEVICES,
    EXAMINATION,
    TRAFFIC_SOURCES,
    Customers,
    Impressions,
    World,
    simulate,
)

F64 = npt.NDArray[np.float64]
log = logging.getLogger(__name__)

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
CALIBRATION_SESSIONS = 80_000  # about a million rows: the fitted rates hold to ~0.1 point
CALIBRATION_CUSTOMERS = 16_000
CALIBRATION_CHUNK = 20_000
CALIBRATION_ROUNDS = 4  # simulate under the last offsets, refit; the change is < 0.01 by round 4
NEWTON_ROUNDS = 50
TOLERANCE = 1e-7
# Impressions a (product, favourite category) cell needs before its own mean is trusted as much
# as the product's overall mean (the context-free table shrinks thin cells towards it).
CONTEXT_FREE_PRIOR = 20.0


@dataclass(frozen=True)
class Offsets:
    """Logit offsets by device (DEVICES order) and traffic source (TRAFFIC_SOURCES order)."""

    device: F64
    traffic: F64

    @classmethod
    def zero(cls) -> Offsets:
        """No offsets: the first calibration round's starting point."""
        return cls(np.zeros(len(DEVICES)), np.zeros(len(TRAFFIC_SOURCES)))

    def to_report(self) -> dict[str, dict[str, float]]:
        """Readable form for the generation report."""
        return {
            "device": {d: round(float(v), 6) for d, v in zip(DEVICES, self.device, strict=True)},
            "traffic_source": {
                t: round(float(v), 6) for t, v in zip(TRAFFIC_SOURCES, self.traffic, strict=True)
            },
        }

    @classmethod
    def from_report(cls, entry: dict[str, dict[str, float]]) -> Offsets:
        """The inverse of to_report (rounded to 1e-6)."""
        return cls(
            np.array([entry["device"][d] for d in DEVICES], dtype=np.float64),
            np.array([entry["traffic_source"][t] for t in TRAFFIC_SOURCES], dtype=np.float64),
        )


LOGIT_STEP = 1 / 256  # logits are binned this finely before fitting; the error is negligible
_BIN_SPAN = 1 << 22  # room for logit bins of either sign within one integer key


@dataclass(frozen=True)
class _Binned:
    """The sample compressed to (device, traffic, slot, logit bin) cells with row counts."""

    device: npt.NDArray[np.int64]
    traffic: npt.NDArray[np.int64]
    examined: F64
    logit: F64
    weight: F64

    @classmethod
    def of(cls, samples: Iterable[Impressions]) -> _Binned:
        """Bins chunk by chunk, so the sample never has to be in memory at once."""
        n_slots, n_traffic = len(EXAMINATION), len(TRAFFIC_SOURCES)
        keys, counts = [], []
        for rows in samples:
            segment = (rows.device * n_traffic + rows.traffic) * n_slots + rows.slot
            logit_bin = np.rint(rows.logit / LOGIT_STEP).astype(np.int64) + _BIN_SPAN // 2
            chunk_keys, chunk_counts = np.unique(
                segment * _BIN_SPAN + logit_bin, return_counts=True
            )
            keys.append(chunk_keys)
            counts.append(chunk_counts)
        merged, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        weight = np.bincount(inverse.ravel(), np.concatenate(counts)).astype(np.float64)
        segment, logit_bin = np.divmod(merged, _BIN_SPAN)
        device_traffic, slot = np.divmod(segment, n_slots)
        device, traffic = np.divmod(device_traffic, n_traffic)
        logit = ((logit_bin - _BIN_SPAN // 2) * LOGIT_STEP).astype(np.float64)
        return cls(device, traffic, np.asarray(EXAMINATION)[slot], logit, weight)


def fit_offsets(samples: Iterable[Impressions]) -> Offsets:
    """Device and traffic offsets whose expected segment click rates match the targets.

    Gauss-Newton on the eight segment rates (three devices, five sources). The click
    probabilities (not sampled clicks) are matched, so the fit has no Bernoulli noise. Sessions
    differ in length by device (engaged Desktop shoppers view more pages), so the row-weighted
    targets are not exactly consistent with one another; the fit is then the least-squares one.
    """
    binned = _Binned.of(samples)
    n_device, n_traffic = len(DEVICES), len(TRAFFIC_SOURCES)
    target = np.array(
        [TARGET_DEVICE[d] for d in DEVICES] + [TARGET_TRAFFIC[t] for t in TRAFFIC_SOURCES]
    )
    cell = binned.device * n_traffic + binned.traffic
    n_cells = n_device * n_traffic
    rows = np.bincount(cell, binned.weight, minlength=n_cells).reshape(n_device, n_traffic)
    by_device, by_traffic = rows.sum(axis=1), rows.sum(axis=0)
    offsets = np.zeros(n_device + n_traffic)
    for _ in range(NEWTON_ROUNDS):
        z = binned.logit + offsets[binned.device] + offsets[n_device + binned.traffic]
        p = 1.0 / (1.0 + np.exp(-z))
        clicks = np.bincount(cell, binned.weight * binned.examined * p, minlength=n_cells)
        slope = np.bincount(
            cell, binned.weight * binned.examined * p * (1.0 - p), minlength=n_cells
        ).reshape(n_device, n_traffic)
        clicks = clicks.reshape(n_device, n_traffic)
        gap = np.concatenate([clicks.sum(axis=1) / by_device, clicks.sum(axis=0) / by_traffic])
        gap -= target
        jacobian = np.block(
            [
                [np.diag(slope.sum(axis=1) / by_device), slope / by_device[:, None]],
                [(slope / by_traffic[None, :]).T, np.diag(slope.sum(axis=0) / by_traffic)],
            ]
        )
        # Only device + traffic sums are identified: lstsq takes the minimum-norm step.
        step = np.linalg.lstsq(jacobian, -gap, rcond=None)[0]
        offsets += step
        if np.abs(step).max() < TOLERANCE:
            break
    device, traffic = offsets[:n_device], offsets[n_device:]
    # Put the shared level on the device side.
    level = float(traffic.mean())
    return Offsets(device=device + level, traffic=traffic - level)


@dataclass(frozen=True)
class Calibration:
    """The fitted offsets and, from the same sample, the context-free ceiling's table.

    context_free[product, favourite category] = the expected click probability of a shown
    candidate given only the product and the customer's favourite category.
    """

    offsets: Offsets
    context_free: F64
    rounds: list[float]  # the largest offset change of each round


def _context_free_table(samples: Iterable[Impressions], world: World) -> F64:
    """Mean click probability per (product, favourite), shrunk towards the product's mean."""
    n_cells = world.n_products * world.n_categories
    flat_total = np.zeros(n_cells)
    flat_count = np.zeros(n_cells)
    for rows in samples:
        cell = rows.candidate * world.n_categories + rows.favourite
        flat_total += np.bincount(cell, rows.probability, minlength=n_cells)
        flat_count += np.bincount(cell, minlength=n_cells)
    total = flat_total.reshape(world.n_products, world.n_categories)
    count = flat_count.reshape(world.n_products, world.n_categories)
    overall = total.sum() / max(count.sum(), 1.0)
    product_mean = (total.sum(axis=1) + CONTEXT_FREE_PRIOR * overall) / (
        count.sum(axis=1) + CONTEXT_FREE_PRIOR
    )
    return (total + CONTEXT_FREE_PRIOR * product_mean[:, None]) / (count + CONTEXT_FREE_PRIOR)


def calibrate(world: World) -> Calibration:
    """Offsets for this catalog, fitted on the internal sample (deterministic, a few seconds)."""
    customers = Customers.draw(
        world, CALIBRATION_CUSTOMERS, np.random.default_rng(CALIBRATION_SEED)
    )

    def sample(offsets: Offsets) -> Iterator[Impressions]:
        for index, first in enumerate(range(0, CALIBRATION_SESSIONS, CALIBRATION_CHUNK)):
            sessions = np.arange(first, min(first + CALIBRATION_CHUNK, CALIBRATION_SESSIONS))
            rng = np.random.default_rng([CALIBRATION_SEED, index])
            yield simulate(
                world, customers, sessions.astype(np.int64), rng, offsets.device, offsets.traffic
            )

    offsets = Offsets.zero()
    changes = []
    started = time.perf_counter()
    for round_number in range(1, CALIBRATION_ROUNDS + 1):
        fitted = fit_offsets(sample(offsets))
        change = np.concatenate([fitted.device - offsets.device, fitted.traffic - offsets.traffic])
        changes.append(float(np.abs(change).max()))
        offsets = fitted
        log.info(
            "calibration round %d/%d: %s simulated sessions, offsets moved %.4f (%.1f s)",
            round_number,
            CALIBRATION_ROUNDS,
            f"{CALIBRATION_SESSIONS:,}",
            changes[-1],
            time.perf_counter() - started,
        )
    table = _context_free_table(sample(offsets), world)
    log.info("calibration: context-free table done (%.1f s)", time.perf_counter() - started)
    return Calibration(offsets, table, changes)
