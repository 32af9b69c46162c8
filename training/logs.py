"""The impression log as arrays: responses, their shown slots, and the clicks attributed to them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import log_kind
from training.schema import DataError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DEFAULT_WINDOW_SECONDS = 1800.0


def log_files(directory: Path, kind: str) -> list[Path]:
    """The complete files of one kind (temporary files of a writer, or of a crash, are not)."""
    if not directory.is_dir():
        raise DataError(f"--logs {directory}: not a directory")
    return sorted(p for p in directory.iterdir() if log_kind(p.name) == kind)


def _read(files: list[Path]) -> Any:
    import pyarrow as pa  # noqa: PLC0415 - only the log commands need it
    import pyarrow.parquet as pq  # noqa: PLC0415

    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def _list_column(table: Any, name: str, dtype: Any) -> tuple[np.ndarray, I64]:
    """A list column as (flat values, offsets)."""
    column = table.column(name).combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False).astype(dtype)
    return values[offsets[0] : offsets[-1]], offsets - offsets[0]


def _blob_column(table: Any, name: str) -> np.ndarray:
    """A large_binary column of float32 blobs as one flat float32 array (a list<float32>
    column, as logs written before the blobs hold, is read as a list)."""
    import pyarrow as pa  # noqa: PLC0415

    if not pa.types.is_large_binary(table.schema.field(name).type):
        return _list_column(table, name, np.float32)[0]
    column = table.column(name).combine_chunks()
    _, offsets_buffer, data = column.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[
        column.offset : column.offset + len(column) + 1
    ]
    raw = (
        np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]]
        if len(column)
        else np.zeros(0, np.uint8)
    )
    return raw.view("<f4").astype(np.float32)


@dataclass(frozen=True)
class Responses:
    """The logged responses (one entry per request) with their candidates, in log order.

    Per response r: candidates[cand_offsets[r]:cand_offsets[r+1]] (ids) with their scores and
    feature rows (features[...] is (candidates, n_features), empty for cold starts); its slate:
    shown positions (into its candidates) and propensities at slot_offsets.
    """

    frame: pd.DataFrame  # request_id, time_ms, session_id, variant, model_version, policy, ...
    candidate_ids: np.ndarray
    scores: F64
    features: F32
    cand_offsets: I64
    shown: I64
    propensities: F64
    slot_offsets: I64

    def __len__(self) -> int:
        return len(self.frame)


def read_responses(directory: Path) -> Responses:
    """Every logged response under `directory`."""
    table = _read(log_files(directory, "impressions"))
    if table is None:
        raise DataError(f"--logs {directory}: no complete impressions-*.parquet files")
    frame = table.select(
        [
            "request_id",
            "time_ms",
            "rpc",
            "session_id",
            "customer_id",
            "model_version",
            "variant",
            "policy",
            "cold_start",
            "explored",
            "n_features",
        ]
    ).to_pandas()
    ids, cand_offsets = _list_column(table, "candidate_ids", object)
    scores, _ = _list_column(table, "scores", np.float64)
    flat = _blob_column(table, "features")
    widths = frame["n_features"].to_numpy(np.int64)
    width = int(widths.max()) if len(widths) else 0
    if np.any((widths != width) & (widths != 0)):
        raise DataError("the log mixes feature widths: learn from one model's features at a time")
    features = flat.reshape(-1, width) if width else np.zeros((len(ids), 0), np.float32)
    if width and len(features) != len(ids):
        # cold starts log no rows: give their candidates NaN rows so positions line up
        full = np.full((len(ids), width), np.nan, np.float32)
        has = np.repeat(widths > 0, np.diff(cand_offsets))
        full[has] = features
        features = full
    shown, slot_offsets = _list_column(table, "shown", np.int64)
    propensities, _ = _list_column(table, "propensities", np.float64)
    return Responses(frame, ids, scores, features, cand_offsets, shown, propensities,
                     slot_offsets)  # fmt: skip


def read_events(directory: Path) -> pd.DataFrame:
    """Every logged click and purchase (an empty frame when there are none)."""
    table = _read(log_files(directory, "events"))
    columns = ["kind", "event_id", "session_id", "request_id", "product_id", "time_ms",
               "received_ms", "known", "variant"]  # fmt: skip
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return table.to_pandas().drop_duplicates("event_id")


@dataclass(frozen=True)
class Slots:
    """One row per shown slot: which response, slot, product, its logged row and propensity,
    whether it was clicked within the window, and whether a purchase of it followed."""

    frame: pd.DataFrame  # response, slot, product_id, request_id, session_id, variant, ...
    features: F32
    clicked: npt.NDArray[np.bool_]
    purchased: npt.NDArray[np.bool_]

    def where(self, keep: npt.NDArray[np.bool_]) -> Slots:
        """The slots where `keep` is true."""
        return Slots(self.frame[keep].reset_index(drop=True), self.features[keep],
                     self.clicked[keep], self.purchased[keep])  # fmt: skip


def attribute(responses: Responses, events: pd.DataFrame, window_seconds: float) -> Slots:
    """Joins every shown slot with its clicks (same request id and product, received by the
    server within the window after the response: both times are the server's clock) and a
    purchase of the clicked product in the session after the click (within the window too, by
    the client's clock, which both events carry)."""
    per_response = np.diff(responses.slot_offsets)
    response = np.repeat(np.arange(len(responses)), per_response)
    slot = np.arange(len(response)) - np.repeat(responses.slot_offsets[:-1], per_response)
    position = responses.cand_offsets[response] + responses.shown
    frame = responses.frame.iloc[response].reset_index(drop=True)
    frame = frame.assign(
        response=response, slot=slot, product_id=responses.candidate_ids[position],
        score=responses.scores[position], propensity=responses.propensities,
    )  # fmt: skip
    window_ms = window_seconds * 1000
    clicks = events[events["kind"] == "recommendation_click"]
    clicks = clicks.groupby(["request_id", "product_id"], as_index=False).agg(
        received_ms=("received_ms", "min"), click_ms=("time_ms", "min")
    )
    joined = frame[["request_id", "product_id", "time_ms"]].merge(
        clicks, on=["request_id", "product_id"], how="left"
    )
    delay = joined["received_ms"].to_numpy(np.float64) - joined["time_ms"].to_numpy(np.float64)
    clicked = np.isfinite(delay) & (delay >= 0) & (delay <= window_ms)
    purchases = events[events["kind"] == "purchase"][["session_id", "product_id", "time_ms"]]
    bought = frame[["session_id", "product_id"]].assign(click_ms=joined["click_ms"])
    bought = bought.reset_index().merge(purchases, on=["session_id", "product_id"], how="inner")
    after = (bought["time_ms"] >= bought["click_ms"]) & (
        bought["time_ms"] <= bought["click_ms"] + window_ms
    )
    purchased = np.zeros(len(frame), dtype=bool)
    purchased[bought.loc[after, "index"].to_numpy(np.int64)] = True
    purchased &= clicked
    return Slots(frame, responses.features[position], clicked, purchased)
