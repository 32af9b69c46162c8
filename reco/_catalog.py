"""Product catalog and affinity tables, shared by training, the compiler and the server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

CATALOG_FILE = "catalog.csv"
AFFINITY_FILE = "affinity.csv"

CATALOG_COLUMNS = (
    "product_id",
    "name",
    "category",
    "subcategory",
    "price",
    "popularity",
    "in_stock",
)
AFFINITY_COLUMNS = (
    "product_id",
    "related_product_id",
    "co_count",
    "confidence",
    "lift",
    "strength",
)

# Index used for "no product" (absent previous product, id not in the catalog). Lookup tables
# carry one extra trailing entry so that index -1 hits it and vectorised lookups need no masking.
NO_PRODUCT = -1


@dataclass(frozen=True)
class Catalog:
    """The products a bundle knows, as column arrays aligned by product index."""

    product_ids: npt.NDArray[np.str_]
    names: npt.NDArray[np.str_]
    categories: npt.NDArray[np.str_]
    subcategories: npt.NDArray[np.str_]
    prices: npt.NDArray[np.float32]
    popularity: npt.NDArray[np.float32]
    in_stock: npt.NDArray[np.bool_]
    index: dict[str, int]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Catalog:
        """Builds the catalog from a frame with CATALOG_COLUMNS; product ids must be unique."""
        missing = [c for c in CATALOG_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"catalog is missing columns: {', '.join(missing)}")
        ids = frame["product_id"].astype(str).to_numpy()
        duplicated = pd.Index(ids)[pd.Index(ids).duplicated()]
        if len(duplicated):
            raise ValueError(f"catalog has duplicate product_id: {duplicated[0]}")
        return cls(
            product_ids=ids.astype(np.str_),
            names=frame["name"].astype(str).to_numpy().astype(np.str_),
            categories=frame["category"].astype(str).to_numpy().astype(np.str_),
            subcategories=frame["subcategory"].astype(str).to_numpy().astype(np.str_),
            prices=frame["price"].to_numpy(dtype=np.float32),
            popularity=frame["popularity"].to_numpy(dtype=np.float32),
            in_stock=frame["in_stock"].astype(bool).to_numpy(),
            index={pid: i for i, pid in enumerate(ids.tolist())},
        )

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Reads catalog.csv."""
        return cls.from_frame(pd.read_csv(path, dtype={"product_id": str}))

    def to_frame(self) -> pd.DataFrame:
        """The catalog as a frame with CATALOG_COLUMNS, in product-index order."""
        return pd.DataFrame(
            {
                "product_id": self.product_ids,
                "name": self.names,
                "category": self.categories,
                "subcategory": self.subcategories,
                "price": self.prices,
                "popularity": self.popularity,
                "in_stock": self.in_stock,
            }
        )

    def __len__(self) -> int:
        return len(self.product_ids)

    def indices_of(self, product_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Product index for each id; NO_PRODUCT for ids not in the catalog (and for "NONE")."""
        ids = np.asarray(product_ids, dtype=np.str_)
        order = np.argsort(self.product_ids)
        sorted_ids = self.product_ids[order]
        pos = np.searchsorted(sorted_ids, ids)
        pos = np.clip(pos, 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        return np.where(found, order[pos], NO_PRODUCT).astype(np.int64)


@dataclass(frozen=True)
class ProductTables:
    """Dense per-product lookups used by the feature builder, padded for NO_PRODUCT.

    affinity[i, j] is the association strength "shoppers with product i go on to product j";
    the padding row and column are zero. popularity has a trailing NaN (unknown product).
    """

    affinity: npt.NDArray[np.float32]
    popularity: npt.NDArray[np.float32]

    @classmethod
    def build(cls, catalog: Catalog, affinity: pd.DataFrame | None) -> ProductTables:
        """Builds the padded tables from the catalog and an affinity frame (AFFINITY_COLUMNS)."""
        n = len(catalog)
        matrix = np.zeros((n + 1, n + 1), dtype=np.float32)
        if affinity is not None and len(affinity):
            src = catalog.indices_of(affinity["product_id"].astype(str).to_numpy())
            dst = catalog.indices_of(affinity["related_product_id"].astype(str).to_numpy())
            keep = (src != NO_PRODUCT) & (dst != NO_PRODUCT)
            matrix[src[keep], dst[keep]] = affinity["strength"].to_numpy(dtype=np.float32)[keep]
        popularity = np.append(catalog.popularity, np.float32(np.nan)).astype(np.float32)
        return cls(affinity=matrix, popularity=popularity)


def load_affinity(path: Path) -> pd.DataFrame:
    """Reads affinity.csv (AFFINITY_COLUMNS)."""
    frame = pd.read_csv(path, dtype={"product_id": str, "related_product_id": str})
    missing = [c for c in AFFINITY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is missing columns: {', '.join(missing)}")
    return frame


def load_tables(bundle_dir: Path) -> tuple[Catalog, ProductTables]:
    """Reads a bundle's catalog and affinity into the structures the feature builder needs."""
    catalog = Catalog.load(bundle_dir / CATALOG_FILE)
    affinity_path = bundle_dir / AFFINITY_FILE
    affinity = load_affinity(affinity_path) if affinity_path.exists() else None
    return catalog, ProductTables.build(catalog, affinity)
