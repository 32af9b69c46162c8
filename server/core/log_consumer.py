"""The shared log's consumer: Redis Streams entries into the embedded sink's Parquet files."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from server.core.impressions import KINDS
from server.core.parquet_sink import ParquetSink, Retention
from server.core.redis_log import (
    DEFAULT_PREFIX,
    RecordError,
    as_text,
    decode,
    log_persistence,
    stream_key,
)
from server.core.redis_store import redacted, redis_client

log = logging.getLogger(__name__)


def default_consumer_name() -> str:
    """host-pid: a restarted consumer is a new one; what the old one held is re-claimed."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ConsumerSettings:
    """Where to read (a consumer group shares the streams' entries among its consumers) and
    when to cut a file (batch entries or interval seconds, whichever comes first)."""

    redis: str
    out: Path
    group: str = "reco-log"
    consumer: str = field(default_factory=default_consumer_name)
    prefix: str = DEFAULT_PREFIX
    batch: int = 2000
    interval_seconds: float = 10.0
    claim_idle_seconds: float = 60.0
    block_ms: int = 500
    retention: Retention = field(default_factory=Retention)


@dataclass
class _Pending:
    """Entries of one kind read but not yet in a complete file, and ids written but not yet
    acknowledged (an XACK that failed is retried before anything new is written)."""

    ids: list[bytes] = field(default_factory=list)
    held: set[bytes] = field(default_factory=set)
    records: list[Any] = field(default_factory=list)
    since: float = 0.0
    unacked: list[bytes] = field(default_factory=list)


class LogConsumer:
    """XREADGROUP's entries of both streams are decoded and buffered per kind; once a batch
    is full or its interval passed they are written as ONE file through ParquetSink (temp
    name, fsync, rename) and only then XACKed. A consumer that dies before XACK leaves its
    entries pending: any consumer of the group XAUTOCLAIMs those idle longer than
    claim_idle_seconds, and a restarted one with the same name reads its own first. A crash
    between the rename and XACK writes those entries again (at least once, never lost).
    Entries that are not records are logged, counted and acknowledged (never retried forever).
    """

    def __init__(self, settings: ConsumerSettings) -> None:
        self.settings = settings
        self.name = redacted(settings.redis)
        self.client = redis_client(settings.redis, max(2.0, settings.block_ms / 1000 + 1.0))
        self.sink = ParquetSink(settings.out, settings.retention)
        self.keys = {kind: stream_key(settings.prefix, kind) for kind in KINDS}
        self._pending = {kind: _Pending() for kind in KINDS}
        # a restarted consumer first reads what it was delivered before (its own pending
        # entries, from these ids on), then new entries
        self._own: dict[str, str] | None = dict.fromkeys(self.keys.values(), "0")
        self._next_claim = 0.0
        self.written = dict.fromkeys(KINDS, 0)
        self.rejected = 0
        self.trimmed = 0

    def describe(self) -> str:
        return (f"log consumer {self.settings.consumer!r} of group {self.settings.group!r} on "
                f"{self.name} -> {self.settings.out}")  # fmt: skip

    def ensure_groups(self) -> None:
        """Creates the group on both streams (from their start) unless it exists."""
        for key in self.keys.values():
            try:
                self.client.xgroup_create(key, self.settings.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def run(self, stop: threading.Event) -> None:
        """Consumes until stop is set, then writes and acknowledges what it holds. A Redis
        outage or a failing directory is logged and retried with backoff; what is buffered
        stays buffered (and unacknowledged, so a consumer that dies meanwhile loses nothing)."""
        log_persistence(self.client, "log consumer")
        delay = 0.2
        ready = False
        while not stop.is_set():
            try:
                if not ready:
                    self.ensure_groups()
                    ready = True
                self.step()
                delay = 0.2
            except (redis.RedisError, OSError) as exc:  # Redis, or the directory (disk full)
                ready = False  # a restarted Redis without persistence lost the group too
                log.warning("log consumer: %s (Redis %s) failed: %.200s; retrying in %.1f s",
                            type(exc).__name__, self.name, exc, delay)  # fmt: skip
                stop.wait(delay)
                delay = min(10.0, delay * 2)
        for kind in KINDS:
            try:
                self._write(kind)
            except redis.RedisError as exc:
                log.warning("log consumer: acknowledging at stop failed (%.200s); the file is "
                            "complete and its entries will be delivered again", exc)  # fmt: skip

    def step(self) -> None:
        """One round: re-claim stale entries, read new ones, write the batches that are due."""
        now = time.monotonic()
        if now >= self._next_claim:
            for kind in KINDS:
                self._claim(kind)
            self._next_claim = now + max(0.1, self.settings.claim_idle_seconds / 2)
        self._read()
        now = time.monotonic()
        for kind, pending in self._pending.items():
            full = len(pending.records) >= self.settings.batch
            due = pending.records and now - pending.since >= self.settings.interval_seconds
            if full or due or pending.unacked:
                self._write(kind)

    def _read(self) -> None:
        s = self.settings
        own = self._own
        streams: dict[Any, Any] = own if own is not None else dict.fromkeys(self.keys.values(), ">")
        block = None if own is not None else s.block_ms
        replies: Any = self.client.xreadgroup(
            s.group, s.consumer, streams, count=s.batch, block=block
        )
        delivered = 0
        for key, entries in replies or []:
            kind = KINDS[list(self.keys.values()).index(as_text(key))]
            delivered += len(entries)
            self._add(kind, entries)
            if own is not None and entries:
                own[as_text(key)] = as_text(entries[-1][0])
        if own is not None and delivered == 0:
            self._own = None

    def _claim(self, kind: str) -> None:
        s = self.settings
        idle_ms = int(s.claim_idle_seconds * 1000)
        start: Any = "0-0"
        while True:
            reply = self.client.xautoclaim(self.keys[kind], s.group, s.consumer, idle_ms,
                                           start_id=start, count=s.batch)  # fmt: skip
            start, entries = reply[0], reply[1]
            if entries:
                log.info("log consumer: re-claimed %d pending %s idle > %g s", len(entries),
                         kind, s.claim_idle_seconds)  # fmt: skip
            self._add(kind, entries)
            gone = reply[2] if len(reply) > 2 else []
            if gone:  # trimmed by MAXLEN before anyone wrote them
                self.trimmed += len(gone)
                log.error("log consumer: %d pending %s were trimmed from the stream before "
                          "they were written (raise --impression-log-redis-maxlen)", len(gone),
                          kind)  # fmt: skip
            if as_text(start) == "0-0" or len(self._pending[kind].records) >= s.batch:
                return

    def _add(self, kind: str, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> None:
        pending = self._pending[kind]
        for entry_id, fields in entries:
            if entry_id in pending.held:  # re-claimed by us while still buffered
                continue
            try:
                record = decode(kind, fields or {})
            except RecordError as exc:
                self.rejected += 1
                log.error("log consumer: entry %s of %s is not a record (%s); acknowledged "
                          "and skipped", as_text(entry_id), self.keys[kind], exc)  # fmt: skip
                pending.unacked.append(entry_id)
                continue
            if not pending.records:
                pending.since = time.monotonic()
            pending.ids.append(entry_id)
            pending.held.add(entry_id)
            pending.records.append(record)

    def _write(self, kind: str) -> None:
        pending = self._pending[kind]
        if pending.records:
            name = self.sink.write(kind, pending.records)  # complete (renamed) on return
            self.written[kind] += len(pending.records)
            log.info("log consumer: %d %s -> %s", len(pending.records), kind, name)
            pending.unacked.extend(pending.ids)
            pending.ids, pending.records, pending.held = [], [], set()
        while pending.unacked:
            chunk = pending.unacked[:1000]
            self.client.xack(self.keys[kind], self.settings.group, *chunk)
            del pending.unacked[: len(chunk)]
