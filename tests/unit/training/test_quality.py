"""Data-quality rules: what each one drops, and how a bad file is refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.dataset import load_dataset, read_text_csv
from training.quality import check_quality
from training.schema import IMPRESSION_COLUMNS, LABEL, NOTEBOOK_COLUMNS, DataError

NOW = pd.Timestamp("2026-01-10T00:00:00Z")


def good_row(i: int) -> dict[str, str]:
    return {
        "session_id": f"S{i:07d}",
        "customer_id": "C000001",
        "current_product_id": "PROD0001",
        "current_category": "Sports",
        "current_price": "120.5",
        "prev_product_1": "PROD0002",
        "prev_product_2": "NONE",
        "prev_product_3": "NONE",
        "products_in_cart": "1",
        "device_type": "Desktop",
        "traffic_source": "Email",
        "time_on_page_sec": "42",
        "scroll_depth": "0.5",
        "clicked_product_image": "1",
        "session_length_mins": "3.5",
        "products_viewed_count": "2",
        LABEL: "1",
        "rec_product_id": "PROD0003",
        "rec_category": "Sports",
        "rec_price": "30",
        "timestamp": "2025-12-01T10:00:00Z",
        "slot": "0",
    }


def frame_of(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(IMPRESSION_COLUMNS), dtype=object)


def with_bad(n_good: int, **bad: str) -> pd.DataFrame:
    return frame_of([good_row(i) for i in range(n_good)] + [good_row(n_good) | bad])


def touched(report: object, rule: str, column: str) -> int:
    results = report.results  # type: ignore[attr-defined]
    return next(r.rows for r in results if r.rule == rule and r.column == column)


@pytest.mark.parametrize(
    ("bad", "rule", "column"),
    [
        ({"session_id": None}, "no null ids", "session_id"),
        ({"customer_id": "  "}, "no null ids", "customer_id"),
        ({"rec_product_id": None}, "no null ids", "rec_product_id"),
        ({"current_price": "0"}, "price > 0", "current_price"),
        ({"rec_price": "-3.5"}, "price > 0", "rec_price"),
        ({"current_price": "cheap"}, "value is a number", "current_price"),
        ({"scroll_depth": "1.2"}, "scroll_depth in [0, 1]", "scroll_depth"),
        ({"scroll_depth": "-0.1"}, "scroll_depth in [0, 1]", "scroll_depth"),
        ({"products_in_cart": "-1"}, "count >= 0", "products_in_cart"),
        ({"session_length_mins": "-2"}, "count >= 0", "session_length_mins"),
        ({"products_viewed_count": "-4"}, "count >= 0", "products_viewed_count"),
        ({"time_on_page_sec": "-1"}, "count >= 0", "time_on_page_sec"),
        ({"slot": "-1"}, "count >= 0", "slot"),
        ({"clicked_product_image": "2"}, "value is 0 or 1", "clicked_product_image"),
        ({LABEL: None}, "value is 0 or 1", LABEL),
        ({LABEL: "yes"}, "value is a number", LABEL),
        ({"timestamp": "2027-03-01T00:00:00Z"}, "timestamp not in the future", "timestamp"),
        ({"timestamp": "last tuesday"}, "timestamp parses", "timestamp"),
    ],
)
def test_each_rule_drops_exactly_the_bad_row(bad: dict[str, str], rule: str, column: str) -> None:
    clean, report = check_quality(with_bad(9, **bad), now=NOW)
    assert len(clean) == 9 and report.kept_rows == 9 and report.dropped_rows == 1
    assert touched(report, rule, column) == 1
    assert sum(r.rows for r in report.results) == 1  # no other rule fired
    assert f"{rule} [{column}]" in report.to_text()


def test_simulator_probabilities_outside_0_1_are_dropped() -> None:
    rows = [good_row(i) | {"sim_click_probability": "0.4"} for i in range(4)]
    rows.append(good_row(4) | {"sim_click_probability": "1.5"})
    clean, report = check_quality(pd.DataFrame(rows, dtype=object), now=NOW)
    assert len(clean) == 4
    assert touched(report, "probability in [0, 1]", "sim_click_probability") == 1


def test_duplicates_are_removed_and_counted() -> None:
    rows = [good_row(i) for i in range(5)]
    clean, report = check_quality(frame_of([*rows, rows[0], rows[3]]), now=NOW)
    assert len(clean) == 5
    assert touched(report, "duplicate rows removed", "all columns") == 2


def test_clean_frame_is_typed_and_keeps_missing_values_as_missing() -> None:
    clean, report = check_quality(
        with_bad(3, time_on_page_sec="", clicked_product_image="TRUE"), now=NOW
    )
    assert len(clean) == 4
    assert clean["current_price"].dtype == "float64"
    assert clean[LABEL].dtype == "int64"
    assert pd.isna(clean.loc[3, "time_on_page_sec"])
    assert clean.loc[3, "clicked_product_image"] == 1.0  # "TRUE" read as 1
    assert report.missing_values == {"time_on_page_sec": 1}


def test_missing_column_is_refused_by_name() -> None:
    frame = frame_of([good_row(0)]).drop(columns=["scroll_depth"])
    with pytest.raises(DataError, match=r"missing required column.*scroll_depth"):
        check_quality(frame, now=NOW)


def test_mostly_bad_file_is_refused_naming_rule_column_and_an_example_row() -> None:
    rows = [good_row(i) for i in range(4)] + [
        good_row(i) | {"scroll_depth": "7"} for i in range(4, 10)
    ]
    with pytest.raises(DataError) as refused:
        check_quality(frame_of(rows), max_bad_fraction=0.5, now=NOW)
    message = str(refused.value)
    assert "6 of 10 rows" in message
    assert "'scroll_depth in [0, 1]' on column 'scroll_depth'" in message
    assert "line 6" in message and "'session_id': 'S0000004'" in message  # header is line 1
    clean, _ = check_quality(frame_of(rows), max_bad_fraction=0.7, now=NOW)  # configurable
    assert len(clean) == 4


def test_notebook_schema_is_recognised_without_candidate_columns() -> None:
    frame = frame_of([good_row(i) for i in range(3)]).loc[:, list(NOTEBOOK_COLUMNS)]
    clean, report = check_quality(frame, now=NOW)
    assert report.feature_set == "session" and len(clean) == 3
    partial = frame.assign(rec_price="3.0")
    with pytest.raises(DataError, match="impressions schema: rec_product_id, rec_category"):
        check_quality(partial, now=NOW)


def test_header_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(",".join(IMPRESSION_COLUMNS) + "\n")
    with pytest.raises(DataError, match="no rows"):
        load_dataset(path)


def test_csv_values_are_read_as_text_so_bad_numbers_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    frame_of([good_row(0), good_row(1) | {"products_in_cart": "two"}]).to_csv(path, index=False)
    raw = read_text_csv(path)
    assert raw.loc[1, "products_in_cart"] == "two"
    _, report = check_quality(raw, now=NOW)
    assert touched(report, "value is a number", "products_in_cart") == 1


def test_impressions_without_a_catalog_get_one_derived(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    frame_of([good_row(i) for i in range(3)]).to_csv(path, index=False)
    data = load_dataset(path, now=NOW)
    assert data.catalog_source == "derived from the impressions"
    assert data.catalog is not None
    assert set(data.catalog["product_id"]) == {"PROD0001", "PROD0003"}
    assert data.catalog.set_index("product_id").loc["PROD0003", "price"] == 30.0
