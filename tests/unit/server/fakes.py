"""A small in-memory model for core tests: a catalog frame and a backend scoring by price."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import FEATURE_NAMES, Backend, Contribution, Encodings, Vocabulary
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


def fake_model(frame: pd.DataFrame, affinity: pd.DataFrame | None = None,
               explain: bool = False) -> LoadedModel:  # fmt: skip
    """A LoadedModel over a catalog frame (CATALOG_COLUMNS), scored by PriceBackend; with
    `explain`, an explainer that credits each row's price (FakeExplainer)."""
    catalog = catalog_from_frame(frame)
    encodings = Encodings(
        Vocabulary(("Electronics", "Sports")), Vocabulary(("Desktop",)), Vocabulary(("Direct",))
    )
    backend = PriceBackend()
    model = LoadedModel.prepare(
        backend=backend,
        encodings=encodings,
        catalog=catalog,
        tables=tables_from_frame(catalog, affinity),
        threshold=0.7,
        version="v-test",
        bundle_dir=Path("/nonexistent"),
        explainer=FakeExplainer() if explain else None,  # type: ignore[arg-type]
    )
    backend.calls.clear()  # the cold-start ranking scored at prepare() is not a request's call
    return model


class FakeExplainer:
    """Explains a row by its candidate price alone (the PriceBackend's whole reason)."""

    def contributions(self, rows: npt.NDArray[np.float32]) -> list[list[Contribution]]:
        return [[Contribution("rec_price", float(row[PRICE]), float(row[PRICE]) / 100.0)]
                for row in rows]  # fmt: skip
