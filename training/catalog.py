"""The catalog and affinity tables to and from pandas frames (training's side of reco's tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reco import CATALOG_COLUMNS, Catalog, ProductTables
from training.settings import DEFAULT_AFFINITY_TOP_K


def catalog_from_frame(frame: pd.DataFrame) -> Catalog:
    """The catalog of a frame with CATALOG_COLUMNS; product ids must be unique."""
    missing = [c for c in CATALOG_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"catalog is missing columns: {', '.join(missing)}")
    columns = {name: frame[name].to_numpy() for name in CATALOG_COLUMNS}
    columns["product_id"] = frame["product_id"].astype(str).to_numpy()
    columns["in_stock"] = frame["in_stock"].astype(bool).to_numpy()
    return Catalog.from_columns(columns)


def catalog_to_frame(catalog: Catalog) -> pd.DataFrame:
    """The catalog as a frame with CATALOG_COLUMNS, in product-index order."""
    return pd.DataFrame(catalog.columns())


def tables_from_frame(
    catalog: Catalog, affinity: pd.DataFrame | None, top_k: int = DEFAULT_AFFINITY_TOP_K
) -> ProductTables:
    """The product tables from an affinity frame (AFFINITY_COLUMNS), or none; each product
    keeps its top_k strongest related products."""
    if affinity is None or not len(affinity):
        return ProductTables.build(catalog)
    return ProductTables.build(
        catalog,
        affinity["product_id"].astype(str).to_numpy(),
        affinity["related_product_id"].astype(str).to_numpy(),
        affinity["strength"].to_numpy(dtype=np.float32),
        top_k,
    )
