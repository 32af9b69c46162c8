"""The data generator: writes impressions.csv, catalog.csv and generation.json, chunk by chunk."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from reco import CATALOG_FILE, NONE_PRODUCT
from training.behaviour import (
    DEVICES,
    EXAMINATION,
    MAX_VIEWED,
    SIMULATOR_VERSION,
    TRAFFIC_SOURCES,
    Customers,
    Impressions,
    World,
    simulate,
)
from training.marginals import Calibration, Offsets, calibrate
from training.products import generate_catalog
from training.schema import (
    GENERATED_COLUMNS,
    LABEL,
    SIM_CONTEXT_FREE,
    SIM_FAVOURITE,
    SIM_INTENT,
    SIM_PROBABILITY,
    SIMULATOR_COLUMNS,
    SLOT,
    TIMESTAMP,
    notebook_view,
)
from training.settings import GenerationSettings

log = logging.getLogger(__name__)

IMPRESSIONS_FILE = "impressions.csv"
SESSIONS_FILE = "sessions.csv"  # the notebook-schema view, on request
REPORT_FILE = "generation.json"

# Timestamps lie in the 90 days before this fixed instant, so output never depends on today.
REFERENCE_TIME = np.datetime64("2026-01-01T00:00:00", "s")
# One customer per this many rows: 15,000 rows -> 375 customers with about 3 sessions each.
ROWS_PER_CUSTOMER = 40
SESSIONS_PER_CHUNK = 20_000
FRAME_ROWS = 50_000


class _Tally:
    """Running counts for the generation report, so no chunk is kept in memory."""

    def __init__(self, pool: int) -> None:
        self.rows = 0
        self.sessions = 0
        self.page_views = 0
        self.seen_customer = np.zeros(pool, dtype=bool)
        self.device = np.zeros((len(DEVICES), 2), dtype=np.int64)
        self.traffic = np.zeros((len(TRAFFIC_SOURCES), 2), dtype=np.int64)
        self.slot = np.zeros((len(EXAMINATION), 2), dtype=np.int64)

    def add(self, rows: Impressions) -> None:
        clicked = rows.clicked.astype(np.int64)
        self.rows += len(rows)
        self.sessions += len(np.unique(rows.session_number))
        self.page_views += len(np.unique(rows.session_number * MAX_VIEWED + rows.page))
        self.seen_customer[rows.customer] = True
        np.add.at(self.device, (rows.device, clicked), 1)
        np.add.at(self.traffic, (rows.traffic, clicked), 1)
        np.add.at(self.slot, (rows.slot, clicked), 1)

    def report(self) -> dict[str, Any]:
        def rates(counts: np.ndarray, names: Sequence[Any]) -> dict[str, dict[str, float]]:
            return {
                str(name): {"rows": int(c.sum()), "ctr": round(float(c[1] / max(c.sum(), 1)), 4)}
                for name, c in zip(names, counts, strict=True)
            }

        report = {
            "rows": self.rows,
            "sessions": self.sessions,
            "page_views": self.page_views,
            "customers": int(self.seen_customer.sum()),
            "click_rate": round(float(self.device[:, 1].sum() / max(self.rows, 1)), 4),
            "by_device": rates(self.device, DEVICES),
            "by_traffic_source": rates(self.traffic, TRAFFIC_SOURCES),
            "by_slot": rates(self.slot, range(len(EXAMINATION))),
        }
        return report


def _product_ids(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Product ids for catalog indices, "NONE" where the index is -1."""
    return np.where(values >= 0, ids[values], NONE_PRODUCT)


def impressions_frame(
    rows: Impressions, catalog: pd.DataFrame, calibration: Calibration, world: World
) -> pd.DataFrame:
    """Simulated impressions as rows of GENERATED_COLUMNS (the impressions schema + truth)."""
    ids = catalog["product_id"].to_numpy(dtype=str)
    categories = catalog["category"].to_numpy(dtype=str)
    prices = catalog["price"].to_numpy(dtype=np.float64)
    previous = {f"prev_product_{k}": _product_ids(rows.previous[:, k - 1], ids) for k in (1, 2, 3)}
    viewed_at = (
        REFERENCE_TIME
        - rows.seconds_before_reference.astype("timedelta64[s]")
        + rows.elapsed_seconds.astype("timedelta64[s]")
    )
    frame = pd.DataFrame(
        {
            "session_id": np.char.add("S", np.char.zfill((rows.session_number + 1).astype(str), 7)),
            "customer_id": np.char.add("C", np.char.zfill((rows.customer + 1).astype(str), 6)),
            "current_product_id": ids[rows.current],
            "current_category": categories[rows.current],
            "current_price": prices[rows.current],
            **previous,
            "products_in_cart": rows.products_in_cart,
            "device_type": np.asarray(DEVICES)[rows.device],
            "traffic_source": np.asarray(TRAFFIC_SOURCES)[rows.traffic],
            "time_on_page_sec": rows.time_on_page_sec,
            "scroll_depth": rows.scroll_depth,
            "clicked_product_image": rows.clicked_product_image,
            "session_length_mins": rows.session_length_mins,
            "products_viewed_count": rows.products_viewed_count,
            LABEL: rows.clicked.astype(np.int64),
            "rec_product_id": ids[rows.candidate],
            "rec_category": categories[rows.candidate],
            "rec_price": prices[rows.candidate],
            TIMESTAMP: np.char.add(np.datetime_as_string(viewed_at, unit="s"), "Z"),
            SLOT: rows.slot,
            SIM_PROBABILITY: np.round(rows.probability, 6),
            SIM_CONTEXT_FREE: np.round(calibration.context_free[rows.candidate, rows.favourite], 6),
            SIM_INTENT: np.asarray(world.subcategories)[rows.intent],
            SIM_FAVOURITE: np.asarray(world.categories)[rows.favourite],
        }
    )
    return frame.loc[:, list(GENERATED_COLUMNS)]


@contextmanager
def _atomic_text(path: Path) -> Iterator[IO[str]]:
    """Writes to a hidden temp file beside `path`, renamed into place only on success.

    `make data` skips generation when impressions.csv exists, so a half file must never
    carry the final name.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", newline="") as handle:
            yield handle
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _simulated(
    settings: GenerationSettings,
    world: World,
    customers: Customers,
    offsets: Offsets,
) -> Iterator[tuple[int, Impressions]]:
    """Chunks of whole simulated sessions, endlessly: (chunk number, its impressions).

    One generator per chunk, seeded by (seed, chunk): chunks are independent streams, and
    chunk c holds session numbers c * SESSIONS_PER_CHUNK onwards.
    """
    index = 0
    while True:
        first = index * SESSIONS_PER_CHUNK
        sessions = np.arange(first, first + SESSIONS_PER_CHUNK, dtype=np.int64)
        rng = np.random.default_rng([settings.seed, 3, index])
        yield index, simulate(world, customers, sessions, rng, offsets.device, offsets.traffic)
        index += 1


_CALIBRATIONS: dict[tuple[int, int], Calibration] = {}


def _calibration(seed: int, n_products: int, world: World) -> Calibration:
    """calibrate(world), remembered per catalog (seed, size) within this process."""
    key = (seed, n_products)
    if key not in _CALIBRATIONS:
        _CALIBRATIONS[key] = calibrate(world)
    return _CALIBRATIONS[key]


def generate(settings: GenerationSettings) -> dict[str, Any]:
    """Generates the data set into settings.out_dir and returns the generation report."""
    out = settings.out_dir
    started = time.perf_counter()
    catalog = generate_catalog(settings.seed, settings.n_products)  # refuses a bad size first
    out.mkdir(parents=True, exist_ok=True)
    world = World.from_catalog(catalog)
    log.info("catalog: %s products (%.1f s)", f"{len(catalog):,}", time.perf_counter() - started)
    calibration = _calibration(settings.seed, settings.n_products, world)
    pool = max(1, round(settings.rows / ROWS_PER_CUSTOMER))
    customers = Customers.draw(world, pool, np.random.default_rng([settings.seed, 2]))
    tally = _Tally(pool)

    remaining = settings.rows
    bar = tqdm(total=settings.rows, unit="rows", desc="generate", disable=not settings.progress)
    with (
        _atomic_text(out / IMPRESSIONS_FILE) as impressions,
        _atomic_text(out / SESSIONS_FILE) if settings.notebook else _null() as sessions,
        bar,
    ):
        for number, chunk in _simulated(settings, world, customers, calibration.offsets):
            rows = chunk.take(slice(0, remaining))  # the last chunk is cut at exactly rows
            # Text frames are several times the size of the arrays: write them a slice at a time.
            for start in range(0, len(rows), FRAME_ROWS):
                frame = impressions_frame(
                    rows.take(slice(start, start + FRAME_ROWS)), catalog, calibration, world
                )
                header = number == 0 and start == 0
                frame.to_csv(impressions, index=False, header=header, lineterminator="\n")
                if sessions is not None:
                    view = notebook_view(frame)
                    view.to_csv(sessions, index=False, header=header, lineterminator="\n")
                bar.update(len(frame))
            tally.add(rows)
            remaining -= len(rows)
            if not remaining:
                break

    log.info("writing %s", out / CATALOG_FILE)
    with _atomic_text(out / CATALOG_FILE) as handle:
        catalog.to_csv(handle, index=False, lineterminator="\n")
    report = {
        "seed": settings.seed,
        "reference_time": f"{REFERENCE_TIME}Z",
        "products": len(catalog),
        **tally.report(),
        "simulator": {
            "version": SIMULATOR_VERSION,
            "click_model": "position-based: P(click) = examination[slot] x "
            "sigmoid(logit + device offset + traffic offset)",
            "examination": list(EXAMINATION),
            "calibration_rounds_max_change": [round(c, 6) for c in calibration.rounds],
            "columns": list(SIMULATOR_COLUMNS),
            "note": "sim_* columns are the simulator's truth; real data never has them",
        },
        "calibrated_offsets": calibration.offsets.to_report(),
        "files": sorted(
            [IMPRESSIONS_FILE, CATALOG_FILE, REPORT_FILE]
            + ([SESSIONS_FILE] if settings.notebook else [])
        ),
    }
    with _atomic_text(out / REPORT_FILE) as handle:
        handle.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    log.info(
        "wrote %s rows, %s sessions (%s page views), %s customers, click rate %.3f to %s",
        report["rows"],
        report["sessions"],
        report["page_views"],
        report["customers"],
        report["click_rate"],
        out,
    )
    return report


@contextmanager
def _null() -> Iterator[None]:
    yield None
