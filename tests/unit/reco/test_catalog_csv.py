"""catalog.csv as the server reads it: the fast plain-cell path and the csv dialect agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reco import Catalog

HEADER = "product_id,name,category,subcategory,price,popularity,in_stock\n"
ROWS = ["P1,Tent,Sports,Camping,10.5,0.25,True\n", "P2,Lamp,Home,Decor,,0.1,false\n",
        "P3,Mug,Home,Kitchen,3.99,1e-3,1\n"]  # fmt: skip


def _write(tmp_path: Path, text: str, name: str = "catalog.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_plain_and_quoted_files_read_the_same(tmp_path: Path) -> None:
    plain = Catalog.load(_write(tmp_path, HEADER + "".join(ROWS), "plain.csv"))
    quoted = Catalog.load(_write(tmp_path, (HEADER + "".join(ROWS)).replace("Tent", '"Tent"'),
                                 "quoted.csv"))  # fmt: skip
    crlf = Catalog.load(
        _write(tmp_path, (HEADER + "".join(ROWS)).replace("\n", "\r\n"), "crlf.csv")
    )
    for other in (quoted, crlf):
        for name, column in plain.columns().items():
            np.testing.assert_array_equal(column, other.columns()[name], err_msg=name)
    assert plain.index == {"P1": 0, "P2": 1, "P3": 2}
    assert np.isnan(plain.prices[1]) and plain.prices[2] == np.float32(float("3.99"))
    assert plain.popularity[2] == np.float32(1e-3) and plain.in_stock.tolist() == [
        True,
        False,
        True,
    ]


def test_a_file_without_its_last_newline_and_one_with_only_a_header(tmp_path: Path) -> None:
    assert len(Catalog.load(_write(tmp_path, (HEADER + "".join(ROWS)).rstrip("\n")))) == 3
    assert len(Catalog.load(_write(tmp_path, HEADER))) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + ROWS[0] + "P2,Lamp,Home\n" + ROWS[2], "line 3 has 3 fields, not 7"),
        (HEADER + ROWS[0] + ROWS[1].replace("Lamp", "Lamp,extra"), "line 3 has 8 fields, not 7"),
        (
            HEADER.replace("price,", "") + "P1,Tent,Sports,Camping,0.2,True\n",
            "missing columns: price",
        ),
        (HEADER + ROWS[0].replace("10.5", "ten"), "column price holds 'ten', not a number"),
        (HEADER + ROWS[0] + ROWS[0], "duplicate product_id: P1"),
        (HEADER + ROWS[0].replace("True", "maybe"), "column in_stock holds 'maybe'"),
    ],
)
def test_bad_files_are_refused_naming_the_line_or_cell(tmp_path: Path, text: str,
                                                        message: str) -> None:  # fmt: skip
    with pytest.raises(ValueError, match=message):
        Catalog.load(_write(tmp_path, text))
