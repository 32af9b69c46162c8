"""The impression log: O(1) queueing, counted drops, a failing sink never loses or blocks,
complete files only, retention, click checks and orphans."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from reco import log_kind
from server.core.errors import InvalidArgument
from server.core.impressions import EVENTS, IMPRESSIONS, Impression, ImpressionLog, LogLimits
from server.core.parquet_sink import ParquetSink, Retention
from server.core.sessions import Event, EventType


class Counted:
    def __init__(self) -> None:
        self.written: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.errors = 0
        self.orphans = 0

    def count_written(self, kind: str, count: int) -> None:
        self.written[kind] = self.written.get(kind, 0) + count

    def count_dropped(self, kind: str, count: int) -> None:
        self.dropped[kind] = self.dropped.get(kind, 0) + count

    def count_sink_error(self, kind: str) -> None:
        self.errors += 1

    def count_orphan_click(self) -> None:
        self.orphans += 1


class FlakySink:
    def __init__(self) -> None:
        self.failing = True
        self.batches: list[tuple[str, int]] = []

    def write(self, kind: str, records: Sequence[Any]) -> str:
        if self.failing:
            raise OSError("disk full")
        self.batches.append((kind, len(records)))
        return "x"

    def prune(self) -> int:
        return 0


def impression(log: ImpressionLog, n: int = 4, variant: str = "A") -> Impression:
    rows = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return Impression(
        log.new_request_id(), 1_700_000_000_000, "Recommend", "s1", "c1", "v1", variant,
        "greedy", False, np.array([f"P{i}" for i in range(10)]), np.arange(n, dtype=np.int64),
        np.linspace(0.9, 0.1, n), rows, np.array([1, 0], dtype=np.int64), np.array([1.0, 0.5]),
    )  # fmt: skip


def click(request_id: str, product: str, event_id: str = "e1") -> Event:
    return Event(event_id, "s1", EventType.RECOMMENDATION_CLICK, 1_700_000_001_000, product,
                 request_id=request_id)  # fmt: skip


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    counters = Counted()
    log = ImpressionLog(FlakySink(), LogLimits(queue_capacity=3), counters)
    for _ in range(5):
        imp = impression(log)
        log.record(imp, ("P1", "P0"))
    assert log.queued(IMPRESSIONS) == 3
    assert counters.dropped == {IMPRESSIONS: 2}
    assert log.ab["A"].requests == 5 and log.ab["A"].shown == 10  # online counts see all


def test_a_failing_sink_keeps_the_records_and_counts_the_errors() -> None:
    counters, sink = Counted(), FlakySink()
    log = ImpressionLog(sink, LogLimits(queue_capacity=10), counters)
    for _ in range(4):
        log.record(impression(log), ("P1", "P0"))
    log.flush()
    assert counters.errors == 1 and log.queued(IMPRESSIONS) == 4 and not sink.batches
    sink.failing = False
    log.flush()
    assert sink.batches == [(IMPRESSIONS, 4)] and log.queued(IMPRESSIONS) == 0
    assert counters.written == {IMPRESSIONS: 4}


def test_clicks_known_unknown_and_not_shown() -> None:
    counters = Counted()
    log = ImpressionLog(FlakySink(), counters=counters)
    imp = impression(log)
    log.record(imp, ("P1", "P0"))
    log.check_click(click(imp.request_id, "P1"))
    log.event(click(imp.request_id, "P1"))
    assert log.ab["A"].clicks == 1
    with pytest.raises(InvalidArgument, match=r"event.product_id .*was not shown by request"):
        log.check_click(click(imp.request_id, "P7"))
    other = Event("e9", "s2", EventType.RECOMMENDATION_CLICK, 1, "P1", request_id=imp.request_id)
    with pytest.raises(
        InvalidArgument, match=r"event.request_id names a response served to another"
    ):
        log.check_click(other)
    log.check_click(click("someone-else-1", "P7"))  # unknown: accepted, an orphan
    log.event(click("someone-else-1", "P7", "e2"))
    assert counters.orphans == 1 and log.ab["A"].clicks == 1
    assert log.queued(EVENTS) == 2


def test_parquet_files_hold_the_exact_rows_and_only_complete_names(tmp_path: Path) -> None:
    counters = Counted()
    log = ImpressionLog(ParquetSink(tmp_path), counters=counters)
    first = impression(log)
    log.record(first, ("P1", "P0"))
    log.event(click(first.request_id, "P1"))
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [log_kind(n) for n in names] == [EVENTS, IMPRESSIONS]
    table = pq.read_table(tmp_path / names[1]).to_pylist()[0]
    assert table["request_id"] == first.request_id
    assert table["candidate_ids"] == ["P0", "P1", "P2", "P3"]
    assert table["shown_ids"] == ["P1", "P0"]
    assert table["propensities"] == [1.0, 0.5]
    rows = np.frombuffer(table["features"], "<f4").reshape(-1, table["n_features"])
    assert np.array_equal(rows, first.features)
    events = pq.read_table(tmp_path / names[0]).to_pylist()[0]
    assert events["request_id"] == first.request_id and events["known"] and events["variant"] == "A"


def test_a_crash_mid_write_leaves_no_complete_name_and_is_cleaned(tmp_path: Path) -> None:
    dead_pid = 4_999_999  # above any pid_max: no such process
    leftover = tmp_path / f".impressions-20260101T000000Z-{dead_pid}-1.parquet.tmp"
    leftover.write_bytes(b"PAR1 half")  # what a kill -9 during a write leaves
    assert log_kind(leftover.name) is None
    # another worker, alive, writing into the same directory right now
    writing = tmp_path / f".impressions-20260101T000000Z-{os.getppid()}-1.parquet.tmp"
    writing.write_bytes(b"PAR1 in progress")
    ParquetSink(tmp_path)  # the next start removes the dead writer's file only
    assert not leftover.exists() and writing.exists()


def test_retention_deletes_old_and_oversized_files(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, Retention(max_age_seconds=3600))
    log = ImpressionLog(sink)
    for _ in range(3):
        log.record(impression(log), ("P1", "P0"))
        log.flush()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3
    os.utime(files[0], (1, 1))  # a day-old file
    assert sink.prune() == 1
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    sink.retention = Retention(max_bytes=size - 1)
    assert sink.prune() == 1 and len(list(tmp_path.iterdir())) == 1


def test_a_batch_mixing_catalogs_and_score_requests_keeps_every_id(tmp_path: Path) -> None:
    log = ImpressionLog(ParquetSink(tmp_path))
    first = impression(log)
    other_catalog = Impression(
        log.new_request_id(), 1, "Recommend", "s2", "", "v2", "B", "greedy", False,
        np.array(["Q0", "Q1", "Q2"]), np.array([2, 0], dtype=np.int64), np.array([0.5, 0.4]),
        np.zeros((2, 3), np.float32), np.array([1], dtype=np.int64), np.array([1.0]),
    )  # fmt: skip
    scored = Impression(
        log.new_request_id(), 1, "Score", "s3", "", "v1", "A", "greedy", False,
        ["X1", "X2", "X3"], None, np.array([0.1, 0.9, 0.5]), np.zeros((3, 3), np.float32),
        np.array([1, 2], dtype=np.int64), np.ones(2),
    )  # fmt: skip
    for record, shown in ((first, ("P1", "P0")), (other_catalog, ("Q0",)), (scored, ("X2", "X3"))):
        log.record(record, shown)
    log.close()
    rows = pq.read_table(next(tmp_path.glob("impressions-*.parquet"))).to_pylist()
    assert [r["candidate_ids"] for r in rows] == [
        ["P0", "P1", "P2", "P3"],
        ["Q2", "Q0"],
        ["X1", "X2", "X3"],
    ]
    assert [r["shown_ids"] for r in rows] == [["P1", "P0"], ["Q0"], ["X2", "X3"]]


def test_two_sinks_of_one_process_never_cut_the_same_name(tmp_path: Path) -> None:
    """Log consumers in containers are all pid 1: on a shared directory, a name both cut in
    the same second would be replaced by the second rename."""
    log = ImpressionLog(None)
    first, second = ParquetSink(tmp_path), ParquetSink(tmp_path)
    names = {sink.write(IMPRESSIONS, [impression(log)]) for sink in (first, second, first)}
    assert len(names) == 3 and len(list(tmp_path.glob("impressions-*.parquet"))) == 3
