"""Partitions for distributed training: found by layout, and Parquet read back as the same
text a CSV holds, so that one set of quality rules applies; the --dask flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reco.settings import EXIT_BAD_SETTING
from training.cli import main
from training.distributed import partitions, read_partitions
from training.schema import DataError


def test_layouts_are_found_in_order(tmp_path: Path) -> None:
    (tmp_path / "impressions").mkdir()
    for name in ("part-1.csv", "part-0.csv"):
        (tmp_path / "impressions" / name).write_text("a\n1\n")
    found, kind = partitions(tmp_path)
    assert kind == "csv" and [Path(p).name for p in found] == ["part-0.csv", "part-1.csv"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no impressions partitions"):
        partitions(tmp_path / "empty")
    with pytest.raises(DataError, match="no such data"):
        partitions(tmp_path / "elsewhere")


def test_parquet_reads_as_the_text_of_a_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"session_id": ["s1", "s2", None], "clicked": [1, 0, 1],
                          "price": [12.5, np.nan, 3.0]})  # fmt: skip
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    csv = read_partitions([str(tmp_path / "a.csv")], "csv", 1024).compute()
    parquet = read_partitions([str(tmp_path / "a.parquet")], "parquet", 1024).compute()
    assert csv["session_id"].tolist()[:2] == parquet["session_id"].tolist()[:2] == ["s1", "s2"]
    assert pd.isna(parquet["session_id"].iloc[2]) and pd.isna(parquet["price"].iloc[1])
    assert parquet["clicked"].tolist() == csv["clicked"].tolist() == ["1", "0", "1"]
    assert [float(v) for v in parquet["price"].dropna()] == [12.5, 3.0]


def test_dask_flags_are_settings_that_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "b")]
    assert main([*train, "--dask", "tcp://127.0.0.1:1", "--dask-workers", "2"]) == EXIT_BAD_SETTING
    assert "--dask and --dask-workers exclude each other" in capsys.readouterr().err
    assert main([*train, "--dask-workers", "0"]) == EXIT_BAD_SETTING
    assert "--dask-workers must be an integer >= 1, got '0'" in capsys.readouterr().err
    bench = ["bench", "--work-dir", str(tmp_path), "--dask-workers", "2", "--rounds", "0"]
    assert main(bench) == EXIT_BAD_SETTING
    assert "--rounds must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
