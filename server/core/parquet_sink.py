"""The embedded log sink: one Parquet file per batch and kind, renamed into place when complete."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reco import LOG_FILE_PATTERN, log_file_name, log_kind
from server.core.impressions import IMPRESSIONS, Impression, LoggedEvent


@dataclass(frozen=True)
class Retention:
    """Complete files older than max_age_seconds, and the oldest beyond max_bytes in total,
    are deleted after each write (0 = no limit)."""

    max_age_seconds: float = 0.0
    max_bytes: int = 0


class ParquetSink:
    """Writes each batch to `.<name>.tmp`, fsyncs it, renames it to its final name and fsyncs
    the directory: a file under a final name is always complete, and a crash leaves at most a
    temporary file (removed at the next start). pyarrow is imported only when a sink is made,
    so a server without an impression log never loads it."""

    def __init__(self, directory: Path, retention: Retention | None = None) -> None:
        import pyarrow  # noqa: PLC0415 - only a server that logs impressions needs it
        import pyarrow.parquet  # noqa: PLC0415

        self._pa = pyarrow
        self._pq = pyarrow.parquet
        self.directory = directory
        self.retention = retention or Retention()
        directory.mkdir(parents=True, exist_ok=True)
        # a random start: two sinks of one pid (consumers in containers are all pid 1, on a
        # shared directory) never cut the same name, which the rename would silently replace
        self._sequence = int.from_bytes(os.urandom(5), "big") << 16
        for leftover in directory.glob(".*.parquet.tmp"):
            # a crash's half-written file, never renamed; not one a live worker is writing
            if log_kind(leftover.name[1 : -len(".tmp")]) and not _alive(leftover.name):
                leftover.unlink(missing_ok=True)

    def write(self, kind: str, records: Sequence[Any]) -> str:
        """Writes one batch as one complete file; returns its name."""
        table = self._impressions(records) if kind == IMPRESSIONS else self._events(records)
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = log_file_name(kind, stamp, os.getpid(), self._sequence)
        temporary = self.directory / f".{name}.tmp"
        try:
            with temporary.open("wb") as handle:
                self._pq.write_table(table, handle, compression="zstd")
                handle.flush()
                os.fsync(handle.fileno())
            temporary.rename(self.directory / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return name

    def prune(self) -> int:
        """Deletes complete files past the retention age or beyond the size limit."""
        limits = self.retention
        if not (limits.max_age_seconds or limits.max_bytes):
            return 0
        files = []
        for entry in os.scandir(self.directory):
            if log_kind(entry.name) is not None:
                stat = entry.stat()
                files.append((stat.st_mtime, stat.st_size, entry.path))
        files.sort()
        deleted = 0
        now = time.time()
        total = sum(size for _, size, _ in files)
        for mtime, size, path in files:
            too_old = limits.max_age_seconds and now - mtime > limits.max_age_seconds
            too_big = limits.max_bytes and total > limits.max_bytes
            if not (too_old or too_big):
                break
            Path(path).unlink(missing_ok=True)
            total -= size
            deleted += 1
        return deleted

    def _impressions(self, records: Sequence[Impression]) -> Any:
        """The batch as columns without per-candidate Python work (the writer shares the GIL
        with the request path): candidate ids dictionary-encoded over the catalogs' id arrays
        (a Recommend's candidates are catalog positions already), the feature rows as one
        float32 blob per response over the request's own array (large_binary, row-major,
        n_features wide; no copy until Parquet encodes it), the rest as typed lists."""
        pa = self._pa

        def strings(name: str) -> Any:
            return pa.array([getattr(r, name) for r in records], pa.string())

        def offsets_of(arrays: Sequence[np.ndarray]) -> np.ndarray:
            offsets = np.zeros(len(arrays) + 1, np.int64)
            np.cumsum(np.fromiter(map(len, arrays), np.int64, len(arrays)), out=offsets[1:])
            return offsets

        def lists(arrays: list[np.ndarray], kind: Any) -> Any:
            values = np.concatenate(arrays) if arrays else np.zeros(0)
            return pa.LargeListArray.from_arrays(pa.array(offsets_of(arrays)),
                                                 pa.array(values, kind))  # fmt: skip

        dictionary, codes = _id_codes(records)
        names = pa.array(dictionary, pa.string())

        def ids_of(positions: np.ndarray, offsets: np.ndarray) -> Any:
            values = pa.DictionaryArray.from_arrays(pa.array(positions, pa.int32()), names)
            return pa.LargeListArray.from_arrays(pa.array(offsets), values)

        id_offsets = offsets_of(codes)
        flat_codes = np.concatenate(codes) if codes else np.zeros(0, np.int32)
        shown = [np.asarray(r.shown, np.int64) for r in records]
        shown_offsets = offsets_of(shown)
        at = np.repeat(id_offsets[:-1], np.diff(shown_offsets))
        shown_flat = np.concatenate(shown) if shown else np.zeros(0, np.int64)
        features = [np.ascontiguousarray(r.features, np.float32) for r in records]
        return pa.table(
            {
                "request_id": strings("request_id"),
                "time_ms": pa.array([r.time_ms for r in records], pa.int64()),
                "rpc": strings("rpc"),
                "session_id": strings("session_id"),
                "customer_id": strings("customer_id"),
                "model_version": strings("model_version"),
                "variant": strings("variant"),
                "policy": strings("policy"),
                "cold_start": pa.array([r.cold_start for r in records], pa.bool_()),
                "explored": pa.array([r.explored for r in records], pa.bool_()),
                "candidate_ids": ids_of(flat_codes, id_offsets),
                "scores": lists([np.asarray(r.scores, np.float64) for r in records], pa.float64()),
                "n_features": pa.array(
                    [f.shape[1] if f.ndim == 2 else 0 for f in features], pa.int32()
                ),
                "features": pa.chunked_array([_blob(pa, f) for f in features], pa.large_binary()),
                "shown": lists([s.astype(np.int32) for s in shown], pa.int32()),
                "shown_ids": ids_of(flat_codes[at + shown_flat], shown_offsets),
                "propensities": lists(
                    [np.asarray(r.propensities, np.float64) for r in records], pa.float64()
                ),
            }
        )

    def _events(self, records: Sequence[LoggedEvent]) -> Any:
        pa = self._pa
        columns: dict[str, Any] = {}
        for name in ("kind", "event_id", "session_id", "request_id", "product_id", "variant"):
            columns[name] = pa.array([getattr(r, name) for r in records], pa.string())
        columns["time_ms"] = pa.array([r.time_ms for r in records], pa.int64())
        columns["received_ms"] = pa.array([r.received_ms for r in records], pa.int64())
        columns["known"] = pa.array([r.known for r in records], pa.bool_())
        return pa.table(columns)


def _id_codes(records: Sequence[Impression]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One dictionary of ids for the batch (each distinct catalog once, then each Score
    request's own ids) and every record's candidates as int32 positions in it."""
    parts: list[np.ndarray] = []
    start_of: dict[int, int] = {}
    size = 0
    codes = []
    for record in records:
        if record.candidate_index is None:  # a Score request's own ids
            ids = np.asarray(record.candidate_ids, dtype=np.str_).reshape(-1)
            parts.append(ids)
            codes.append(np.arange(size, size + len(ids), dtype=np.int32))
            size += len(ids)
            continue
        start = start_of.get(id(record.candidate_ids))
        if start is None:
            catalog = np.asarray(record.candidate_ids)
            start = start_of[id(record.candidate_ids)] = size
            parts.append(catalog)
            size += len(catalog)
        codes.append((record.candidate_index + start).astype(np.int32))
    dictionary = np.concatenate(parts) if parts else np.zeros(0, np.str_)
    return dictionary, codes


def _blob(pa: Any, rows: np.ndarray) -> Any:
    """A one-element large_binary array over the rows' own memory (no copy)."""
    offsets = np.array([0, rows.nbytes], np.int64)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(rows)]
    return pa.Array.from_buffers(pa.large_binary(), 1, buffers)


def _alive(temporary_name: str) -> bool:
    """True when the process whose pid is in the file's name still runs (another worker
    sharing the directory): its temporary file is not a leftover."""
    match = LOG_FILE_PATTERN.match(temporary_name[1 : -len(".tmp")])
    if match is None:
        return False
    pid = int(match.group(3))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
