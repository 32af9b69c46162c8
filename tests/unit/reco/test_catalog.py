"""The sparse affinity table: what it stores, what lookups give, how it is checked and mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reco import AFFINITY_FILES, NO_PRODUCT, Catalog, ProductTables, SparseAffinity, load_tables
from reco._sequence import _subcategory_means

F32 = np.float32


def _random_dense(rng: np.random.Generator, n: int, density: float = 0.3) -> np.ndarray:
    values = np.array([0.25, 0.5, 0.75, 1.0, 2.5], dtype=F32)  # ties on purpose
    dense = rng.choice(values, (n, n)) * (rng.random((n, n)) < density)
    np.fill_diagonal(dense, 0.0)
    return dense.astype(F32)


def _from_dense(dense: np.ndarray, top_k: int | None = None) -> SparseAffinity:
    src, dst = np.nonzero(dense)
    return SparseAffinity.from_pairs(len(dense), src, dst, dense[src, dst], top_k)


def _truncated(dense: np.ndarray, k: int) -> np.ndarray:
    """Each row's k strongest entries, ties to the lower column, by a plain loop."""
    out = np.zeros_like(dense)
    for i, row in enumerate(dense):
        ranked = sorted((j for j in range(len(row)) if row[j] != 0), key=lambda j: (-row[j], j))
        for j in ranked[:k]:
            out[i, j] = row[j]
    return out


def test_lookups_give_what_the_dense_table_gives_padding_included() -> None:
    rng = np.random.default_rng(1)
    dense = _random_dense(rng, 40)
    table = _from_dense(dense)
    padded = np.zeros((41, 41), dtype=F32)
    padded[:40, :40] = dense
    assert np.array_equal(table.to_dense(), padded)
    rows = rng.integers(-1, 40, 500)
    cols = rng.integers(-1, 40, 500)
    expected = padded[np.where(rows < 0, 40, rows), np.where(cols < 0, 40, cols)]
    got = table.lookup(rows, cols)
    assert got.dtype == F32 and np.array_equal(got, expected)
    # Broadcasting: a history (rows, h) against candidates (rows, 1), as the sequence set asks.
    seen = rng.integers(-1, 40, (7, 5))
    candidates = rng.integers(-1, 40, 7)
    block = table.lookup(seen, candidates[:, None])
    assert block.shape == (7, 5)
    assert np.array_equal(block, padded[seen, candidates[:, None]])
    assert table.lookup(NO_PRODUCT, NO_PRODUCT) == 0.0


def test_top_k_keeps_each_products_strongest_and_reads_the_rest_as_zero() -> None:
    rng = np.random.default_rng(2)
    dense = _random_dense(rng, 30, density=0.6)
    for k in (1, 3, 10):
        table = _from_dense(dense, top_k=k)
        expected = _truncated(dense, k)
        assert np.array_equal(table.to_dense()[:30, :30], expected)
        assert np.diff(table.indptr).max() <= k
        # Rows stay sorted by related index, whatever the strength order was.
        for i in range(30):
            related, _ = table.neighbours(i)
            assert np.all(np.diff(related) > 0)


def test_an_empty_table_reads_zero_everywhere() -> None:
    table = SparseAffinity.empty(5)
    assert len(table) == 0
    assert np.array_equal(table.lookup(np.arange(-1, 5), np.arange(-1, 5)), np.zeros(6, F32))
    related, strengths = table.neighbours(NO_PRODUCT)
    assert len(related) == len(strengths) == 0


def test_inconsistent_arrays_are_refused_naming_what_is_wrong() -> None:
    good = _from_dense(_random_dense(np.random.default_rng(3), 6))
    indptr, related, strength = good.indptr, good.related, good.strength
    cases = {
        "int64 of 8 entries": (indptr[:-1], related, strength),
        "must be int32": (indptr, related.astype(np.int64), strength),
        "one length": (indptr, related, strength[:-1]),
        "rise from 0": (indptr[::-1].copy(), related, strength),
        "padding row": (
            np.append(indptr[:-1], indptr[-1] + 1),
            np.append(related, 0).astype(np.int32),
            np.append(strength, 1).astype(F32),
        ),
        "lie in 0..5": (
            indptr,
            np.where(related == related[0], 6, related).astype(np.int32),
            strength,
        ),
        "increase within each row": (indptr, related[::-1].copy(), strength),
    }
    for message, arrays in cases.items():
        with pytest.raises(ValueError, match=message):
            SparseAffinity.from_csr(6, *arrays)
    with pytest.raises(ValueError, match="each \\(product, related product\\) once"):
        SparseAffinity.from_pairs(3, [0, 0], [1, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        SparseAffinity.from_pairs(3, [0], [1], [0.5], top_k=0)


def test_saved_tables_load_memory_mapped_and_identical(tmp_path: Path) -> None:
    table = _from_dense(_random_dense(np.random.default_rng(4), 25), top_k=4)
    assert table.save(tmp_path) == list(AFFINITY_FILES)
    loaded = SparseAffinity.load(tmp_path, 25)
    assert isinstance(loaded.strength.base, np.memmap)
    assert np.array_equal(loaded.to_dense(), table.to_dense())
    with pytest.raises(ValueError, match="int64 of 12 entries"):
        SparseAffinity.load(tmp_path, 10)  # another catalog's table
    (tmp_path / AFFINITY_FILES[2]).write_bytes(b"not an array")
    with pytest.raises(ValueError, match=r"affinity_strength\.npy is not a readable \.npy array"):
        SparseAffinity.load(tmp_path, 25)


def test_product_tables_ignore_unknown_ids_and_cut_at_top_k() -> None:
    catalog = Catalog.from_columns(
        {
            "product_id": ["A", "B", "C"],
            "name": ["a", "b", "c"],
            "category": ["x", "x", "y"],
            "subcategory": ["s", "s", "t"],
            "price": [1.0, 2.0, 3.0],
            "popularity": [0.5, 1.0, 0.1],
            "in_stock": [True, True, False],
        }
    )
    tables = ProductTables.build(
        catalog, ["A", "A", "B", "Z"], ["B", "C", "Z", "A"], [0.2, 0.9, 5.0, 5.0], top_k=1
    )
    assert tables.affinity.lookup(0, 2) == F32(0.9)  # A's strongest
    assert tables.affinity.lookup(0, 1) == 0.0  # cut at k = 1
    assert len(tables.affinity) == 1  # the pairs naming Z are gone
    assert np.isnan(tables.popularity[NO_PRODUCT])
    with pytest.raises(ValueError, match="affinity table has 2 products, the catalog 3"):
        ProductTables.with_affinity(catalog, SparseAffinity.empty(2))


def test_subcategory_means_match_the_dense_formula() -> None:
    rng = np.random.default_rng(5)
    n, n_sub = 50, 4
    dense = _random_dense(rng, n)
    codes = rng.integers(0, n_sub, n).astype(np.int64)
    member = np.zeros((n, n_sub + 1))
    member[np.arange(n), codes] = 1.0
    pairs = member.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nan_to_num(
            (member.T @ dense.astype(np.float64) @ member) / np.outer(pairs, pairs)
        )
    got = _subcategory_means(codes, n_sub, _from_dense(dense))
    assert got.shape == (n_sub + 1, n_sub + 1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_a_bundle_from_before_the_sparse_table_still_loads_its_affinity_csv(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_text(
        "product_id,name,category,subcategory,price,popularity,in_stock\n"
        "A,a,x,s,1.0,0.5,true\nB,b,x,s,2.0,1.0,true\n"
    )
    (tmp_path / "affinity.csv").write_text(
        "product_id,related_product_id,co_count,confidence,lift,strength\nA,B,3,0.5,1.5,0.75\n"
    )
    _, tables = load_tables(tmp_path)
    assert tables.affinity.lookup([0, 1], [1, 0]).tolist() == [0.75, 0.0]
    tables.affinity.save(tmp_path)  # the sparse files win once present
    (tmp_path / "affinity.csv").write_text("not,read\n")
    assert load_tables(tmp_path)[1].affinity.lookup(0, 1) == F32(0.75)
