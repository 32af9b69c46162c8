"""Product catalog and affinity tables as a bundle holds them, read without pandas."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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

_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}


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
    def from_columns(cls, columns: Mapping[str, Sequence[Any] | npt.ArrayLike]) -> Catalog:
        """Builds the catalog from CATALOG_COLUMNS (any sequences of equal length); product ids
        must be unique. Raises ValueError naming a missing column or a duplicate id."""
        missing = [c for c in CATALOG_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"catalog is missing columns: {', '.join(missing)}")
        ids = [str(v) for v in np.asarray(columns["product_id"], dtype=object).tolist()]
        index: dict[str, int] = {}
        for i, pid in enumerate(ids):
            if pid in index:
                raise ValueError(f"catalog has duplicate product_id: {pid}")
            index[pid] = i

        def text(name: str) -> npt.NDArray[np.str_]:
            values = np.asarray(columns[name], dtype=object).tolist()
            return np.array([str(v) for v in values], dtype=np.str_).reshape(len(ids))

        return cls(
            product_ids=np.array(ids, dtype=np.str_).reshape(len(ids)),
            names=text("name"),
            categories=text("category"),
            subcategories=text("subcategory"),
            prices=np.asarray(columns["price"], dtype=np.float32).reshape(len(ids)),
            popularity=np.asarray(columns["popularity"], dtype=np.float32).reshape(len(ids)),
            in_stock=np.asarray(columns["in_stock"], dtype=bool).reshape(len(ids)),
            index=index,
        )

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Reads catalog.csv (as training writes it); raises ValueError naming the bad cell."""
        columns = read_csv_columns(path, CATALOG_COLUMNS)
        return cls.from_columns(
            {
                **columns,
                "price": _floats(path, "price", columns["price"]),
                "popularity": _floats(path, "popularity", columns["popularity"]),
                "in_stock": _booleans(path, "in_stock", columns["in_stock"]),
            }
        )

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """The catalog as CATALOG_COLUMNS arrays, in product-index order."""
        return {
            "product_id": self.product_ids,
            "name": self.names,
            "category": self.categories,
            "subcategory": self.subcategories,
            "price": self.prices,
            "popularity": self.popularity,
            "in_stock": self.in_stock,
        }

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
    def build(
        cls,
        catalog: Catalog,
        product_ids: npt.ArrayLike = (),
        related_ids: npt.ArrayLike = (),
        strengths: npt.ArrayLike = (),
    ) -> ProductTables:
        """The padded tables from the catalog and affinity pairs (product -> related product,
        strength); pairs naming a product the catalog does not know are ignored."""
        n = len(catalog)
        matrix = np.zeros((n + 1, n + 1), dtype=np.float32)
        src = catalog.indices_of(np.asarray(product_ids, dtype=np.str_))
        if len(src):
            dst = catalog.indices_of(np.asarray(related_ids, dtype=np.str_))
            keep = (src != NO_PRODUCT) & (dst != NO_PRODUCT)
            matrix[src[keep], dst[keep]] = np.asarray(strengths, dtype=np.float32)[keep]
        popularity = np.append(catalog.popularity, np.float32(np.nan)).astype(np.float32)
        return cls(affinity=matrix, popularity=popularity)


def read_csv_columns(path: Path, required: Sequence[str]) -> dict[str, list[str]]:
    """A CSV file's columns as lists of strings; raises ValueError naming missing columns."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path.name} is missing columns: {', '.join(missing)}")
        positions = {name: header.index(name) for name in header}
        columns: dict[str, list[str]] = {name: [] for name in header}
        for line, row in enumerate(reader, 2):
            if len(row) != len(header):
                raise ValueError(
                    f"{path.name} line {line} has {len(row)} fields, not {len(header)}"
                )
            for name, at in positions.items():
                columns[name].append(row[at])
    return columns


def _floats(path: Path, column: str, values: list[str]) -> list[float]:
    try:
        return [float(v) if v else float("nan") for v in values]
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise ValueError(f"{path.name} column {column} holds {bad[:64]!r}, not a number") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return bool(not text)
    return True


def _booleans(path: Path, column: str, values: list[str]) -> list[bool]:
    out = []
    for v in values:
        word = v.strip().lower()
        if word not in _TRUE | _FALSE:
            raise ValueError(f"{path.name} column {column} holds {v[:64]!r}, not true/false")
        out.append(word in _TRUE)
    return out


def load_tables(bundle_dir: Path) -> tuple[Catalog, ProductTables]:
    """Reads a bundle's catalog and affinity into the structures the feature builder needs."""
    catalog = Catalog.load(bundle_dir / CATALOG_FILE)
    affinity_path = bundle_dir / AFFINITY_FILE
    if not affinity_path.exists():
        return catalog, ProductTables.build(catalog)
    pairs = read_csv_columns(affinity_path, AFFINITY_COLUMNS)
    strengths = _floats(affinity_path, "strength", pairs["strength"])
    tables = ProductTables.build(
        catalog, pairs["product_id"], pairs["related_product_id"], strengths
    )
    return catalog, tables
