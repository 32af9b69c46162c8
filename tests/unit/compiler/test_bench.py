"""Benchmark mechanics: fresh rows for every call, interleaving, and the Markdown table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from compiler.bench import (
    BenchOptions,
    Measurement,
    bundle_codegen,
    fresh_row_pool,
    markdown_table,
    measure,
    rows_needed,
)


def test_fresh_row_pool_resamples_each_column_from_the_source() -> None:
    source = np.arange(40, dtype=np.float32).reshape(10, 4)
    pool = fresh_row_pool(source, 1000, np.random.default_rng(0))
    assert pool.shape == (1000, 4) and pool.dtype == np.float32 and pool.flags.c_contiguous
    for j in range(4):
        assert set(pool[:, j].tolist()) <= set(source[:, j].tolist())
    # Columns are drawn independently: most pooled rows are not rows of the source.
    source_rows = {tuple(row) for row in source.tolist()}
    assert sum(tuple(row) in source_rows for row in pool.tolist()) < 300


def test_every_call_gets_rows_that_predictor_never_scored() -> None:
    options = BenchOptions(batch_sizes=(1, 7, 50), repeats=3, rows_per_run=100)
    pool = np.arange(rows_needed(options), dtype=np.float32).reshape(-1, 1)  # row id in column 0
    seen: dict[str, list[float]] = defaultdict(list)

    def recorder(name: str) -> Callable[[np.ndarray], None]:
        def predict(rows: np.ndarray) -> None:
            seen[name].extend(rows[:, 0].tolist())

        return predict

    measurements = measure(
        {"a": recorder("a"), "b": recorder("b")}, pool, options, np.random.default_rng(0)
    )
    for ids in seen.values():
        assert len(ids) == len(pool) and len(set(ids)) == len(ids)
    assert {(m.name, m.batch) for m in measurements} == {
        (name, batch) for name in "ab" for batch in (1, 7, 50)
    }


def test_serving_shape_shares_session_columns_within_a_batch() -> None:
    options = BenchOptions(batch_sizes=(5,), repeats=1, rows_per_run=20)
    pool = np.arange(200, dtype=np.float32).reshape(100, 2)
    batches = []
    measure(
        {"a": lambda rows: batches.append(rows.copy())},
        pool,
        options,
        np.random.default_rng(0),
        [0],
    )
    for batch in batches:
        assert len(set(batch[:, 0].tolist())) == 1 and len(set(batch[:, 1].tolist())) == 5


def test_markdown_table_divides_by_lightgbm_per_row_time() -> None:
    table = markdown_table(
        [Measurement("lightgbm", 100, 400.0), Measurement("compiled", 100, 100.0)],
        ["compiled", "lightgbm"],
    )
    lines = table.splitlines()
    assert lines[2] == "| compiled | 100 | 100.0 | 1.00 | 4.0x |"
    assert lines[3] == "| lightgbm | 100 | 400.0 | 4.00 | 1.0x |"


def test_bundle_codegen_reads_the_manifest_and_defaults_to_tl2cgen() -> None:
    assert bundle_codegen({"compiler": {"codegen": {"used": "flat"}}}) == "flat"
    # Bundles compiled before the flat generator existed record no codegen: theirs is TL2cgen's.
    assert bundle_codegen({"compiler": {"flags": {}}}) == "tl2cgen"
    assert bundle_codegen({}) == "tl2cgen"
