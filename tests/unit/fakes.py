"""A small in-memory model for core tests: a catalog frame and a backend scoring by price."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import FEATURE_NAMES, Backend, Encodings, Vocabulary
from server.core.model import LoadedModel
from training.catalog import catalog_from_frame, tables_from_frame

PRICE = FEATURE_NAMES.index("rec_price")


class PriceBackend(Backend):
    """Scores a row by its candidate price (deterministic, easy to reason about)."""

    def __init__(self) -> None:
        super().__init__("fake", len(FEATURE_NAMES), self._by_price)
        self.calls: list[int] = []
        self.last_rows: npt.NDArray[np.float32] | None = None

    def _by_price(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        self.calls.append(len(rows))
        self.last_rows = rows.copy()
        return np.asarray(rows[:, PRICE], dtype=np.float64) / 100.0


def fake_model(frame: pd.DataFrame, affinity: pd.DataFrame | None = None) -> LoadedModel:
    """A LoadedModel over a catalog frame (CATALOG_COLUMNS), scored by PriceBackend."""
    catalog = catalog_from_frame(frame)
    encodings = Encodings(
        Vocabulary(("Electronics", "Sports")), Vocabulary(("Desktop",)), Vocabulary(("Direct",))
    )
    codes = encodings.category.encode(catalog.categories)
    return LoadedModel(
        bundle_dir=Path("/nonexistent"),
        version="v-test",
        manifest={"feature_names": list(FEATURE_NAMES)},
        backend=PriceBackend(),
        rejected_backends=(),
        encodings=encodings,
        catalog=catalog,
        tables=tables_from_frame(catalog, affinity),
        threshold=0.7,
        product_category_codes=np.append(codes, np.float32(np.nan)),
        product_prices=np.append(catalog.prices, np.float32(np.nan)),
    )
