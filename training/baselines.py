"""What the live session is compared against: a popularity ranker and a context-free batch model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import Encodings
from training.affinity import session_baskets
from training.model import predict, train_booster
from training.schema import LABEL

# Prior weight (in impressions) pulling a rarely shown product's click rate to the global one.
POPULARITY_PRIOR = 20.0

BATCH_FEATURES = (
    "rec_category_enc",
    "rec_price",
    "rec_popularity",
    "favourite_category_match",
    "category_share",
    "customer_views",
)


@dataclass(frozen=True)
class PopularityRanker:
    """Scores a candidate by its smoothed click rate in the training split, whatever the context."""

    rates: dict[str, float]
    global_rate: float

    @classmethod
    def fit(cls, train: pd.DataFrame) -> PopularityRanker:
        """Per-product click rate over the training impressions, shrunk to the global rate."""
        global_rate = float(train[LABEL].mean())
        stats = train.groupby("rec_product_id")[LABEL].agg(["sum", "count"])
        smoothed = (stats["sum"] + POPULARITY_PRIOR * global_rate) / (
            stats["count"] + POPULARITY_PRIOR
        )
        return cls({str(k): float(v) for k, v in smoothed.items()}, global_rate)

    def score(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """One score per row: its candidate's rate (the global rate for unseen products)."""
        mapped = frame["rec_product_id"].map(self.rates)
        return mapped.fillna(self.global_rate).to_numpy(np.float64)


@dataclass(frozen=True)
class CustomerProfiles:
    """Each customer's long-term view history by category, from the training split only."""

    category_views: pd.DataFrame  # index customer_id, one column per category: view counts

    @classmethod
    def fit(cls, train: pd.DataFrame, catalog: pd.DataFrame) -> CustomerProfiles:
        """Counts the categories of the products each customer viewed in training sessions."""
        baskets = session_baskets(train)
        customer_of = train.drop_duplicates("session_id").set_index("session_id")["customer_id"]
        category_of = catalog.set_index("product_id")["category"]
        views = pd.DataFrame(
            {
                "customer_id": baskets["session_id"].map(customer_of).to_numpy(),
                "category": baskets["product_id"].map(category_of).to_numpy(),
            }
        ).dropna()
        table = pd.crosstab(views["customer_id"], views["category"])
        return cls(table)

    def features(self, frame: pd.DataFrame) -> dict[str, npt.NDArray[np.float64]]:
        """favourite_category_match, category_share, customer_views; NaN for unknown customers."""
        table = self.category_views
        totals = table.sum(axis=1)
        favourite = table.idxmax(axis=1) if len(table.columns) else pd.Series(dtype=str)
        customer = frame["customer_id"]
        known = customer.isin(table.index).to_numpy()
        views = customer.map(totals).to_numpy(np.float64)
        match = (frame["rec_category"].to_numpy() == customer.map(favourite).to_numpy()) * 1.0
        rows = table.index.get_indexer(customer)
        cols = table.columns.get_indexer(frame["rec_category"])
        counts = np.zeros(len(frame))
        hit = (rows >= 0) & (cols >= 0)
        counts[hit] = table.to_numpy()[rows[hit], cols[hit]]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = counts / views
        return {
            "favourite_category_match": np.where(known, match, np.nan),
            "category_share": np.where(known, share, np.nan),
            "customer_views": np.where(known, views, np.nan),
        }


@dataclass(frozen=True)
class BatchModel:
    """LightGBM on what a nightly batch job knows: the candidate and the customer's history.

    No live-session input (current or previous products, cart, engagement, device, traffic).
    """

    booster: lgb.Booster
    profiles: CustomerProfiles
    encodings: Encodings
    popularity: dict[str, float]

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        catalog: pd.DataFrame,
        encodings: Encodings,
        num_threads: int,
    ) -> BatchModel:
        """Trains on the training split with the same LightGBM parameters as the main model."""
        profiles = CustomerProfiles.fit(train, catalog)
        popularity = dict(zip(catalog["product_id"], catalog["popularity"], strict=True))
        X = batch_matrix(train, profiles, encodings, popularity)
        booster = train_booster(X, train[LABEL].to_numpy(), BATCH_FEATURES, num_threads)
        return cls(booster, profiles, encodings, popularity)

    def score(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Click probabilities for each row."""
        X = batch_matrix(frame, self.profiles, self.encodings, self.popularity)
        return predict(self.booster, X)


def batch_matrix(
    frame: pd.DataFrame,
    profiles: CustomerProfiles,
    encodings: Encodings,
    popularity: dict[str, float],
) -> npt.NDArray[np.float32]:
    """The batch model's feature matrix (BATCH_FEATURES order)."""
    columns: dict[str, Any] = {
        "rec_category_enc": encodings.category.encode(frame["rec_category"].astype(str).to_numpy()),
        "rec_price": frame["rec_price"].to_numpy(np.float64),
        "rec_popularity": frame["rec_product_id"].map(popularity).to_numpy(np.float64),
        **profiles.features(frame),
    }
    return np.column_stack([columns[name] for name in BATCH_FEATURES]).astype(np.float32)
