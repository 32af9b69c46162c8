"""Product catalog and affinity tables as a bundle holds them, read without pandas."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

CATALOG_FILE = "catalog.csv"
# Bundles before issue 15 held every affinity pair as CSV; still read, never written.
AFFINITY_CSV_FILE = "affinity.csv"
# The sparse affinity table (SparseAffinity), one .npy file per CSR array, memory-mapped.
AFFINITY_FILES = ("affinity_indptr.npy", "affinity_related.npy", "affinity_strength.npy")

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
        ids = _strings(columns["product_id"])
        index = dict(zip(ids, range(len(ids)), strict=True))
        if len(index) != len(ids):
            seen: set[str] = set()
            duplicate = next(pid for pid in ids if pid in seen or seen.add(pid))  # type: ignore[func-returns-value]
            raise ValueError(f"catalog has duplicate product_id: {duplicate}")

        def text(name: str) -> npt.NDArray[np.str_]:
            return np.array(_strings(columns[name]), dtype=np.str_).reshape(len(ids))

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
class SparseAffinity:
    """Association strengths "shoppers with product i go on to product j", the top k per
    product, as CSR arrays over table rows (row n_products is the NO_PRODUCT padding, empty).

    Row i's related products are related[indptr[i]:indptr[i + 1]], in increasing index order,
    with their strengths beside them. Every pair not stored has strength 0: lookups give what a
    dense (n + 1) x (n + 1) table holding the same pairs would give, bit for bit.
    """

    n_products: int
    indptr: npt.NDArray[np.int64]  # n_products + 2
    related: npt.NDArray[np.int32]  # nnz, sorted within each row
    strength: npt.NDArray[np.float32]  # nnz
    # row * (n_products + 1) + related for every entry: sorted, so one searchsorted answers a
    # whole array of (row, column) lookups (derived at load, never stored).
    keys: npt.NDArray[np.int64]

    @classmethod
    def from_csr(cls, n_products: int, indptr: npt.ArrayLike, related: npt.ArrayLike,
                 strength: npt.ArrayLike) -> SparseAffinity:  # fmt: skip
        """Checks the arrays (as a bundle stores them, perhaps memory-mapped) and derives the
        lookup keys; raises ValueError naming the array that is inconsistent."""
        indptr = np.asarray(indptr)
        related = np.asarray(related)
        strength = np.asarray(strength)
        if indptr.dtype != np.int64 or indptr.shape != (n_products + 2,):
            raise ValueError(f"affinity indptr must be int64 of {n_products + 2} entries")
        if related.dtype != np.int32 or strength.dtype != np.float32:
            raise ValueError("affinity related must be int32 and strength float32")
        nnz = len(related)
        if strength.shape != (nnz,) or related.ndim != 1:
            raise ValueError("affinity related and strength must be 1-d of one length")
        if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
            raise ValueError("affinity indptr must rise from 0 to the number of pairs")
        if indptr[-1] != indptr[-2]:
            raise ValueError("the affinity padding row (unknown product) must be empty")
        if nnz and (int(related.min()) < 0 or int(related.max()) >= n_products):
            raise ValueError(f"affinity related indices must lie in 0..{n_products - 1}")
        rows = np.repeat(np.arange(n_products + 1, dtype=np.int64), np.diff(indptr))
        keys = rows * (n_products + 1) + related
        if nnz > 1 and np.any(np.diff(keys) <= 0):
            raise ValueError("affinity related indices must increase within each row")
        return cls(n_products, indptr, related, strength, keys)

    @classmethod
    def from_pairs(
        cls,
        n_products: int,
        src: npt.ArrayLike,
        dst: npt.ArrayLike,
        strength: npt.ArrayLike,
        top_k: int | None = None,
    ) -> SparseAffinity:
        """From (product index, related index, strength) pairs, each pair at most once; with
        top_k, each product keeps its top_k strongest (ties to the lower related index).
        Pairs with strength 0 are dropped: they read as 0 anyway."""
        rows = np.asarray(src, dtype=np.int64)
        cols = np.asarray(dst, dtype=np.int64)
        values = np.asarray(strength, dtype=np.float32)
        keep = values != 0
        rows, cols, values = rows[keep], cols[keep], values[keep]
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"affinity top_k must be at least 1, got {top_k}")
            # Strongest first within each product; rank within the product by position.
            order = np.lexsort((cols, -values, rows))
            rows, cols, values = rows[order], cols[order], values[order]
            rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
            kept = rank < top_k
            rows, cols, values = rows[kept], cols[kept], values[kept]
        order = np.lexsort((cols, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        if len(rows) > 1 and np.any((np.diff(rows) == 0) & (np.diff(cols) == 0)):
            raise ValueError("affinity pairs must name each (product, related product) once")
        counts = np.bincount(rows, minlength=n_products + 1)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls.from_csr(n_products, indptr, cols.astype(np.int32), values)

    @classmethod
    def empty(cls, n_products: int) -> SparseAffinity:
        """No pairs at all: every lookup is 0."""
        return cls.from_pairs(n_products, [], [], [])

    @classmethod
    def load(cls, directory: Path, n_products: int) -> SparseAffinity:
        """The AFFINITY_FILES in directory, memory-mapped (read-only, shared between
        processes); raises ValueError naming the file that is not what it should be."""
        arrays = []
        for name in AFFINITY_FILES:
            try:
                arrays.append(np.load(directory / name, mmap_mode="r", allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{name} is not a readable .npy array: {exc}") from None
        return cls.from_csr(n_products, *arrays)

    def save(self, directory: Path) -> list[str]:
        """Writes AFFINITY_FILES into directory; returns their names."""
        for name, array in zip(AFFINITY_FILES, (self.indptr, self.related, self.strength),
                               strict=True):  # fmt: skip
            np.save(directory / name, np.ascontiguousarray(array), allow_pickle=False)
        return list(AFFINITY_FILES)

    def __len__(self) -> int:
        """The number of stored pairs."""
        return len(self.related)

    def lookup(self, rows: npt.ArrayLike, columns: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Strength of each (row, column) pair, broadcast together; index NO_PRODUCT (-1) on
        either side reads 0, as the padding row and column of a dense table do."""
        n = self.n_products
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(columns, dtype=np.int64)
        r = np.where(r < 0, n, r)
        query = r * (n + 1) + np.where(c < 0, n, c)
        if not len(self.keys):
            return np.zeros(query.shape, dtype=np.float32)
        at = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return np.where(self.keys[at] == query, self.strength[at], np.float32(0.0))

    def neighbours(self, product: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Product's related products (increasing index) and their strengths; none for
        NO_PRODUCT."""
        row = self.n_products if product < 0 else product
        start, stop = int(self.indptr[row]), int(self.indptr[row + 1])
        return self.related[start:stop], self.strength[start:stop]

    def to_dense(self) -> npt.NDArray[np.float32]:
        """The (n + 1) x (n + 1) table these pairs stand for (tests and small catalogs only)."""
        n = self.n_products
        dense = np.zeros((n + 1) * (n + 1), dtype=np.float32)
        dense[self.keys] = self.strength
        return dense.reshape(n + 1, n + 1)


@dataclass(frozen=True)
class ProductTables:
    """Per-product lookups used by the feature builder, padded for NO_PRODUCT.

    affinity is the sparse top-k association table (SparseAffinity: 0 for the padding and for
    every pair it does not hold). popularity has a trailing NaN (unknown product).
    """

    affinity: SparseAffinity
    popularity: npt.NDArray[np.float32]

    @classmethod
    def build(
        cls,
        catalog: Catalog,
        product_ids: npt.ArrayLike = (),
        related_ids: npt.ArrayLike = (),
        strengths: npt.ArrayLike = (),
        top_k: int | None = None,
    ) -> ProductTables:
        """The tables from the catalog and affinity pairs (product -> related product,
        strength), each product's top_k strongest kept (None: all); pairs naming a product
        the catalog does not know are ignored."""
        src = catalog.indices_of(np.asarray(product_ids, dtype=np.str_))
        dst = catalog.indices_of(np.asarray(related_ids, dtype=np.str_)) if len(src) else src
        keep = (src != NO_PRODUCT) & (dst != NO_PRODUCT)
        values = np.asarray(strengths, dtype=np.float32)[keep] if len(src) else []
        affinity = SparseAffinity.from_pairs(len(catalog), src[keep], dst[keep], values, top_k)
        return cls.with_affinity(catalog, affinity)

    @classmethod
    def with_affinity(cls, catalog: Catalog, affinity: SparseAffinity) -> ProductTables:
        """The tables of a catalog and its (already built or loaded) affinity."""
        if affinity.n_products != len(catalog):
            raise ValueError(
                f"the affinity table has {affinity.n_products} products, the catalog {len(catalog)}"
            )
        popularity = np.append(catalog.popularity, np.float32(np.nan)).astype(np.float32)
        return cls(affinity=affinity, popularity=popularity)


def read_csv_columns(path: Path, required: Sequence[str]) -> dict[str, list[str]]:
    """A CSV file's columns as lists of strings; raises ValueError naming missing columns."""
    data = path.read_bytes()
    if b'"' in data or b"\r" in data:  # quoted cells or CRLF: the csv module's full dialect
        return _columns_of_rows(path, csv.reader(io.StringIO(data.decode("utf-8"))), required)
    # Plain cells (what training writes): one split in C, then a slice per column, instead of
    # a Python append per cell (a 1M-product catalog in about a second, not ten).
    text = data.decode("utf-8")
    header_line, _, body = text.removesuffix("\n").partition("\n")
    header = header_line.split(",") if header_line else []
    _check_header(path, header, required)
    width = len(header)
    if not body:
        return {name: [] for name in header}
    # Fields per line from the byte positions of commas and newlines (no Python loop).
    raw = np.frombuffer(data, dtype=np.uint8)[len(header_line.encode("utf-8")) + 1 :]
    ends = np.flatnonzero(raw == 10)
    if not len(ends) or ends[-1] != len(raw) - 1:
        ends = np.append(ends, len(raw))
    fields = np.diff(np.searchsorted(np.flatnonzero(raw == 44), ends), prepend=0) + 1
    bad = np.flatnonzero(fields != width)
    if len(bad):
        line = int(bad[0])
        raise ValueError(f"{path.name} line {line + 2} has {fields[line]} fields, not {width}")
    cells = body.replace("\n", ",").split(",")
    return {name: cells[at::width] for at, name in enumerate(header)}


def _check_header(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path.name} is missing columns: {', '.join(missing)}")


def _columns_of_rows(path: Path, reader: Iterator[list[str]],
                     required: Sequence[str]) -> dict[str, list[str]]:  # fmt: skip
    """The columns of csv rows (the first is the header), each row checked for its width."""
    header = next(reader, [])
    _check_header(path, header, required)
    columns: dict[str, list[str]] = {name: [] for name in header}
    positions = {name: header.index(name) for name in header}
    for line, row in enumerate(reader, 2):
        if len(row) != len(header):
            raise ValueError(f"{path.name} line {line} has {len(row)} fields, not {len(header)}")
        for name, at in positions.items():
            columns[name].append(row[at])
    return columns


def _strings(values: Sequence[Any] | npt.ArrayLike) -> list[str]:
    """Values as Python strings (a list of strings, as a CSV column is, passes through)."""
    if isinstance(values, list) and all(type(v) is str for v in values):
        return values
    return [str(v) for v in np.asarray(values, dtype=object).tolist()]


def _floats(path: Path, column: str, values: list[str]) -> npt.NDArray[np.float64] | list[float]:
    if all(values):  # no empty cell: numpy parses them all at once, as float() would
        try:
            return np.array(values, dtype=np.str_).astype(np.float64)
        except ValueError:
            pass  # the loop below names the bad cell
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
    """Reads a bundle's catalog and affinity into the structures the feature builder needs:
    the sparse AFFINITY_FILES (memory-mapped), else a pre-issue-15 bundle's affinity.csv,
    else no affinity at all."""
    catalog = Catalog.load(bundle_dir / CATALOG_FILE)
    if (bundle_dir / AFFINITY_FILES[0]).exists():
        affinity = SparseAffinity.load(bundle_dir, len(catalog))
        return catalog, ProductTables.with_affinity(catalog, affinity)
    affinity_path = bundle_dir / AFFINITY_CSV_FILE
    if not affinity_path.exists():
        return catalog, ProductTables.build(catalog)
    pairs = read_csv_columns(affinity_path, AFFINITY_COLUMNS)
    strengths = _floats(affinity_path, "strength", pairs["strength"])
    tables = ProductTables.build(
        catalog, pairs["product_id"], pairs["related_product_id"], strengths
    )
    return catalog, tables
