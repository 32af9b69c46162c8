"""Data-quality rules applied before training (and by `python -m training check`), vectorised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.schema import (
    BINARY_COLUMNS,
    CANDIDATE_SET,
    ID_COLUMNS,
    LABEL,
    NON_NEGATIVE_COLUMNS,
    NUMERIC_COLUMNS,
    PREVIOUS_COLUMNS,
    PRICE_COLUMNS,
    SIM_CONTEXT_FREE,
    SIM_PROBABILITY,
    SLOT,
    TIMESTAMP,
    DataError,
    detect_feature_set,
)
from training.settings import DEFAULT_MAX_BAD_FRACTION

_TRUE_FALSE = {"true": "1", "false": "0"}


@dataclass(frozen=True)
class RuleResult:
    """How many rows one rule touched (dropped), on which column, with the first bad row."""

    rule: str
    column: str
    rows: int
    example_line: int | None = None  # 1-based line in the CSV (the header is line 1)
    example: dict[str, Any] | None = None


@dataclass(frozen=True)
class QualityReport:
    """What the checks did to a file: rows in, rows kept, and each rule's count."""

    feature_set: str
    input_rows: int
    kept_rows: int
    results: list[RuleResult]
    missing_values: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_rows(self) -> int:
        """Rows removed by any rule (duplicates included)."""
        return self.input_rows - self.kept_rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for metrics.json and the manifest)."""
        return {
            "feature_set": self.feature_set,
            "input_rows": self.input_rows,
            "kept_rows": self.kept_rows,
            "dropped_rows": self.dropped_rows,
            "rules": [{"rule": r.rule, "column": r.column, "rows": r.rows} for r in self.results],
            "missing_values": self.missing_values,
        }

    def to_text(self) -> str:
        """The printed report: one line per rule, then the totals."""
        width = max((len(r.rule) + len(r.column) for r in self.results), default=20) + 4
        lines = [f"data-quality report ({self.feature_set} schema, {self.input_rows} rows)"]
        for r in self.results:
            label = f"{r.rule} [{r.column}]"
            lines.append(f"  {label:<{width}} {r.rows:>9} rows dropped")
        for column, count in self.missing_values.items():
            lines.append(f"  missing value [{column}]: {count} rows kept as missing")
        lines.append(
            f"  kept {self.kept_rows} of {self.input_rows} rows ({self.dropped_rows} dropped)"
        )
        return "\n".join(lines)


def _numeric(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(numbers, unparseable mask): blanks become NaN; text that is no number is flagged.

    Plain numbers take the fast path; only values that fail it are cleaned (trimmed,
    "true"/"false" read as 1/0) and tried again.
    """
    numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
    retry = (numbers.isna() & values.notna()).to_numpy(bool)
    unparseable = np.zeros(len(values), dtype=bool)
    if retry.any():
        text = values[retry].astype("string").str.strip().str.lower().replace(_TRUE_FALSE)
        text = text.mask(text == "")
        again = pd.to_numeric(text, errors="coerce").astype(np.float64)
        numbers[retry] = again.to_numpy()
        unparseable[retry] = (again.isna() & text.notna()).to_numpy(bool)
    return numbers, unparseable


def _example(raw: pd.DataFrame, mask: np.ndarray) -> tuple[int | None, dict[str, Any] | None]:
    if not mask.any():
        return None, None
    position = int(np.argmax(mask))
    row = raw.iloc[position]
    return int(raw.index[position]) + 2, {k: (None if pd.isna(v) else v) for k, v in row.items()}


def check_quality(
    raw: pd.DataFrame,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, QualityReport]:
    """Applies every rule to a frame read as text; returns the clean, typed frame and the report.

    `raw` has one string column per CSV column and the CSV's row order (index 0 = line 2).
    Rows failing a rule are dropped; DataError refuses a file with a missing required column
    or with more than max_bad_fraction of its rows dropped, naming the rule, the column and
    an example row.
    """
    feature_set = detect_feature_set(raw.columns)
    if raw.empty:
        raise DataError("the file has a header but no rows")
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    input_rows = len(raw)
    results: list[RuleResult] = []
    checks: list[tuple[str, str, np.ndarray]] = []

    duplicate = raw.duplicated(keep="first").to_numpy()
    results.append(RuleResult("duplicate rows removed", "all columns", int(duplicate.sum())))
    frame = raw.loc[~duplicate].copy()

    ids = (*ID_COLUMNS, "rec_product_id") if feature_set == CANDIDATE_SET else ID_COLUMNS
    for column in ids:
        text = frame[column].astype("string").str.strip()
        checks.append(("no null ids", column, (text.isna() | (text == "")).to_numpy(bool)))
        frame[column] = text

    numbers: dict[str, pd.Series] = {}
    unparseable: dict[str, np.ndarray] = {}
    for column in (c for c in NUMERIC_COLUMNS if c in frame.columns):
        numbers[column], unparseable[column] = _numeric(frame[column])
        checks.append(("value is a number", column, unparseable[column]))
    for column in (c for c in PRICE_COLUMNS if c in numbers):
        checks.append(("price > 0", column, (numbers[column] <= 0).to_numpy(bool)))
    scroll = numbers["scroll_depth"]
    checks.append(
        ("scroll_depth in [0, 1]", "scroll_depth", ((scroll < 0) | (scroll > 1)).to_numpy(bool))
    )
    for column in (*NON_NEGATIVE_COLUMNS, *(c for c in (SLOT,) if c in numbers)):
        checks.append(("count >= 0", column, (numbers[column] < 0).to_numpy(bool)))
    for column in (c for c in (SIM_PROBABILITY, SIM_CONTEXT_FREE) if c in numbers):
        value = numbers[column]
        checks.append(("probability in [0, 1]", column, ((value < 0) | (value > 1)).to_numpy(bool)))
    for column in BINARY_COLUMNS:
        value = numbers[column]
        bad = value.notna() & ~value.isin([0.0, 1.0])
        if column == LABEL:  # every training row needs its label (text is counted above)
            bad |= value.isna() & ~unparseable[column]
        checks.append(("value is 0 or 1", column, bad.to_numpy(bool)))
    if TIMESTAMP in frame.columns:
        stamps = pd.to_datetime(frame[TIMESTAMP], utc=True, errors="coerce", format="ISO8601")
        present = frame[TIMESTAMP].notna().to_numpy(bool)
        checks.append(("timestamp parses", TIMESTAMP, present & stamps.isna().to_numpy(bool)))
        checks.append(("timestamp not in the future", TIMESTAMP, (stamps > now).to_numpy(bool)))

    bad_any = np.zeros(len(frame), dtype=bool)
    for rule, column, mask in checks:
        line, example = _example(frame, mask)
        results.append(RuleResult(rule, column, int(mask.sum()), line, example))
        bad_any |= mask

    report = QualityReport(
        feature_set=feature_set,
        input_rows=input_rows,
        kept_rows=int((~bad_any).sum()),
        results=results,
        missing_values={
            c: int(v.isna().sum()) for c, v in numbers.items() if c != LABEL and v.isna().any()
        },
    )
    if report.dropped_rows > max_bad_fraction * input_rows or report.kept_rows == 0:
        raise DataError(_refusal(report, max_bad_fraction))

    for column, values in numbers.items():
        frame[column] = values
    for column in (c for c in PREVIOUS_COLUMNS if c in frame.columns):
        frame[column] = frame[column].fillna("NONE")
    clean = frame.loc[~bad_any].reset_index(drop=True)
    clean[LABEL] = clean[LABEL].astype(np.int64)
    return clean, report


def _refusal(report: QualityReport, max_bad_fraction: float) -> str:
    worst = max(report.results, key=lambda r: r.rows)
    message = (
        f"refused: {report.dropped_rows} of {report.input_rows} rows "
        f"({report.dropped_rows / report.input_rows:.1%}) fail the data-quality rules "
        f"(limit {max_bad_fraction:.0%}); most rows fail '{worst.rule}' on column "
        f"'{worst.column}' ({worst.rows} rows)"
    )
    if worst.example is not None:
        message += f"; e.g. line {worst.example_line}: {worst.example}"
    return message
