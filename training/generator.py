"""The data generator: writes impressions.csv, catalog.csv and generation.json, chunk by chunk."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from training.behaviour import DEVICES, TRAFFIC_SOURCES, Customers, PageViews, World, simulate
from training.calibration import Offsets, calibrate
from training.catalog import CATALOG_FILE
from training.products import generate_catalog
from training.schema import IMPRESSION_COLUMNS, LABEL, notebook_view
from training.settings import GenerationSettings

log = logging.getLogger(__name__)

IMPRESSIONS_FILE = "impressions.csv"
SESSIONS_FILE = "sessions.csv"  # the notebook-schema view, on request
REPORT_FILE = "generation.json"

# Timestamps lie in the 90 days before this fixed instant, so output never depends on today.
REFERENCE_TIME = np.datetime64("2026-01-01T00:00:00", "s")
# One customer per this many rows: 15,000 rows -> 3,000 customers, like the notebook.
ROWS_PER_CUSTOMER = 5
SESSIONS_PER_CHUNK = 20_000


class _Tally:
    """Running counts for the generation report, so no chunk is kept in memory."""

    def __init__(self, pool: int) -> None:
        self.rows = 0
        self.sessions = 0
        self.seen_customer = np.zeros(pool, dtype=bool)
        self.device = np.zeros((len(DEVICES), 2), dtype=np.int64)
        self.traffic = np.zeros((len(TRAFFIC_SOURCES), 2), dtype=np.int64)

    def add(self, page: PageViews, clicked: np.ndarray) -> None:
        self.rows += len(page)
        self.sessions += len(np.unique(page.session_number))
        self.seen_customer[page.customer] = True
        np.add.at(self.device, (page.device, clicked.astype(np.int64)), 1)
        np.add.at(self.traffic, (page.traffic, clicked.astype(np.int64)), 1)

    def report(self) -> dict[str, Any]:
        def rates(counts: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
            return {
                name: {"rows": int(c.sum()), "ctr": round(float(c[1] / max(c.sum(), 1)), 4)}
                for name, c in zip(names, counts, strict=True)
            }

        return {
            "rows": self.rows,
            "sessions": self.sessions,
            "customers": int(self.seen_customer.sum()),
            "click_rate": round(float(self.device[:, 1].sum() / max(self.rows, 1)), 4),
            "by_device": rates(self.device, DEVICES),
            "by_traffic_source": rates(self.traffic, TRAFFIC_SOURCES),
        }


def impressions_frame(page: PageViews, clicked: np.ndarray, catalog: pd.DataFrame) -> pd.DataFrame:
    """Simulated page views as rows of the impressions schema (IMPRESSION_COLUMNS)."""
    ids = catalog["product_id"].to_numpy(dtype=str)
    categories = catalog["category"].to_numpy(dtype=str)
    prices = catalog["price"].to_numpy(dtype=np.float64)
    previous = {
        f"prev_product_{k}": np.where(
            page.previous[:, k - 1] >= 0, ids[page.previous[:, k - 1]], "NONE"
        )
        for k in (1, 2, 3)
    }
    viewed_at = (
        REFERENCE_TIME
        - page.seconds_before_reference.astype("timedelta64[s]")
        + np.rint(page.session_length_mins * 60).astype("timedelta64[s]")
    )
    frame = pd.DataFrame(
        {
            "session_id": np.char.add("S", np.char.zfill((page.session_number + 1).astype(str), 7)),
            "customer_id": np.char.add("C", np.char.zfill((page.customer + 1).astype(str), 6)),
            "current_product_id": ids[page.current],
            "current_category": categories[page.current],
            "current_price": prices[page.current],
            **previous,
            "products_in_cart": page.products_in_cart,
            "device_type": np.asarray(DEVICES)[page.device],
            "traffic_source": np.asarray(TRAFFIC_SOURCES)[page.traffic],
            "time_on_page_sec": page.time_on_page_sec,
            "scroll_depth": page.scroll_depth,
            "clicked_product_image": page.clicked_product_image,
            "session_length_mins": page.session_length_mins,
            "products_viewed_count": page.products_viewed_count,
            LABEL: clicked.astype(np.int64),
            "rec_product_id": ids[page.candidate],
            "rec_category": categories[page.candidate],
            "rec_price": prices[page.candidate],
            "timestamp": np.char.add(np.datetime_as_string(viewed_at, unit="s"), "Z"),
        }
    )
    return frame.loc[:, list(IMPRESSION_COLUMNS)]


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


def _chunks(
    settings: GenerationSettings, world: World, customers: Customers, offsets: Offsets
) -> Iterator[tuple[PageViews, np.ndarray]]:
    """Simulated chunks of whole sessions; the last one is cut at exactly settings.rows."""
    remaining = settings.rows
    index = 0
    while remaining > 0:
        first = index * SESSIONS_PER_CHUNK
        sessions = np.arange(first, first + SESSIONS_PER_CHUNK, dtype=np.int64)
        # One generator per chunk, seeded by (seed, chunk): chunks are independent streams.
        page = simulate(
            world, customers, sessions, np.random.default_rng([settings.seed, 3, index])
        )
        clicked = page.clicked(offsets.device, offsets.traffic)
        if len(page) > remaining:
            page, clicked = page.head(remaining), clicked[:remaining]
        remaining -= len(page)
        index += 1
        yield page, clicked


_OFFSETS: dict[tuple[int, int], Offsets] = {}


def _offsets(seed: int, n_products: int, world: World) -> Offsets:
    """calibrate(world), remembered per catalog (seed, size) within this process."""
    key = (seed, n_products)
    if key not in _OFFSETS:
        _OFFSETS[key] = calibrate(world)
    return _OFFSETS[key]


def generate(settings: GenerationSettings) -> dict[str, Any]:
    """Generates the data set into settings.out_dir and returns the generation report."""
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    catalog = generate_catalog(settings.seed, settings.n_products)
    world = World.from_catalog(catalog)
    offsets = _offsets(settings.seed, settings.n_products, world)
    pool = max(1, round(settings.rows / ROWS_PER_CUSTOMER))
    customers = Customers.draw(world, pool, np.random.default_rng([settings.seed, 2]))
    tally = _Tally(pool)

    with (
        _atomic_text(out / IMPRESSIONS_FILE) as impressions,
        _atomic_text(out / SESSIONS_FILE) if settings.notebook else _null() as sessions,
        tqdm(
            total=settings.rows, unit="rows", desc="generate", disable=not settings.progress
        ) as bar,
    ):
        for number, (page, clicked) in enumerate(_chunks(settings, world, customers, offsets)):
            frame = impressions_frame(page, clicked, catalog)
            frame.to_csv(impressions, index=False, header=number == 0, lineterminator="\n")
            if sessions is not None:
                notebook_view(frame).to_csv(
                    sessions, index=False, header=number == 0, lineterminator="\n"
                )
            tally.add(page, clicked)
            bar.update(len(frame))

    with _atomic_text(out / CATALOG_FILE) as handle:
        catalog.to_csv(handle, index=False, lineterminator="\n")
    report = {
        "seed": settings.seed,
        "reference_time": f"{REFERENCE_TIME}Z",
        "products": len(catalog),
        **tally.report(),
        "calibrated_offsets": offsets.to_report(),
        "files": sorted(
            [IMPRESSIONS_FILE, CATALOG_FILE, REPORT_FILE]
            + ([SESSIONS_FILE] if settings.notebook else [])
        ),
    }
    with _atomic_text(out / REPORT_FILE) as handle:
        handle.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    log.info(
        "wrote %s rows, %s sessions, %s customers, click rate %.3f to %s",
        report["rows"],
        report["sessions"],
        report["customers"],
        report["click_rate"],
        out,
    )
    return report


@contextmanager
def _null() -> Iterator[None]:
    yield None
