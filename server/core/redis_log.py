"""The shared log sink: each record XADDed to a Redis Stream per kind, and its exact decoding."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from server.core.impressions import EVENTS, IMPRESSIONS, Impression, LoggedEvent
from server.core.redis_store import read_persistence, redacted, redis_client

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "reco:log:"
# The record layout's version: a consumer refuses (and reports) entries of another one.
VERSION = b"1"
# Records per pipeline round trip: bounds the client's buffer, not what is kept queued.
_PIPELINE = 256
_STRINGS = ("request_id", "rpc", "session_id", "customer_id", "model_version", "variant", "policy")
_EVENT_STRINGS = ("kind", "event_id", "session_id", "request_id", "product_id", "variant")
# An entry's fields as XADD takes them (redis-py's own alias is invariant in its key type).
Fields = dict[Any, Any]


class RecordError(ValueError):
    """A stream entry that is not a record of this layout (another writer, another version)."""


def stream_key(prefix: str, kind: str) -> str:
    """The stream one kind of record goes to (one per kind, as the files are)."""
    return f"{prefix}{kind}"


class RedisSink:
    """Appends each record of a batch to its kind's stream (XADD with an approximate MAXLEN,
    pipelined); write returns only once Redis answered every XADD, so the log keeps a batch
    queued until then. A failed round trip raises: the whole batch is kept and retried, so a
    record XADDed before the failure may be appended twice (at least once; the consumer's
    files then hold it twice, see docs/loop.md)."""

    def __init__(
        self,
        url: str,
        max_len: int,
        prefix: str = DEFAULT_PREFIX,
        timeout_seconds: float = 1.0,
    ) -> None:
        self.name = redacted(url)
        self.max_len = max_len
        self.prefix = prefix
        self.client = redis_client(url, timeout_seconds)

    def describe(self) -> str:
        return f"Redis Streams {self.name} ({self.prefix}{{{IMPRESSIONS},{EVENTS}}})"

    def check_persistence(self) -> None:
        """Logs what Redis persistence means for XADDed records (a record leaves the server's
        queue once XADD returned: if Redis loses it, nothing else holds it)."""
        log_persistence(self.client, "impression log")

    def write(self, kind: str, records: Sequence[Any]) -> str:
        """XADDs every record; returns the first and last entry ids."""
        key = stream_key(self.prefix, kind)
        encode = encode_impression if kind == IMPRESSIONS else encode_event
        first = last = ""
        for start in range(0, len(records), _PIPELINE):
            pipe = self.client.pipeline(transaction=False)
            for record in records[start : start + _PIPELINE]:
                pipe.xadd(key, encode(record), maxlen=self.max_len, approximate=True)
            ids = pipe.execute()
            first = first or as_text(ids[0])
            last = as_text(ids[-1])
        return f"{key} {first}..{last}"

    def prune(self) -> int:
        """Nothing to do: XADD's MAXLEN trims the stream."""
        return 0


def log_persistence(client: Any, who: str) -> None:
    """Logs Redis persistence as the session store does (a warning unless every write is
    fsynced before its reply)."""
    found = read_persistence(client)
    (log.info if found.durable else log.warning)("%s: %s", who, found.describe())


def encode_impression(record: Impression) -> Fields:
    """The record as stream fields: strings as they are, arrays as little-endian bytes (no
    per-candidate Python work but the ids, which are length-prefixed UTF-8)."""
    fields: Fields = {"v": VERSION}
    for name in _STRINGS:
        fields[name] = getattr(record, name)
    ids = [p.encode() for p in record.ids()]
    features = np.ascontiguousarray(record.features, "<f4")
    fields.update(
        time_ms=int(record.time_ms),
        cold_start=int(record.cold_start),
        explored=int(record.explored),
        ids=b"".join(ids),
        id_lengths=np.fromiter(map(len, ids), "<i4", len(ids)).tobytes(),
        scores=np.ascontiguousarray(record.scores, "<f8").tobytes(),
        n_features=features.shape[1] if features.ndim == 2 else -1,
        features=features.tobytes(),
        shown=np.ascontiguousarray(record.shown, "<i8").tobytes(),
        propensities=np.ascontiguousarray(record.propensities, "<f8").tobytes(),
    )
    return fields


def decode_impression(fields: dict[bytes, bytes]) -> Impression:
    """The Impression encode_impression wrote (its candidates as a list of ids)."""
    _check_version(fields)
    try:
        lengths = np.frombuffer(fields[b"id_lengths"], "<i4")
        blob = fields[b"ids"]
        ends = np.cumsum(lengths).tolist()
        starts = [0, *ends[:-1]]
        ids = [blob[a:b].decode() for a, b in zip(starts, ends, strict=True)]
        n_features = int(fields[b"n_features"])
        features = np.frombuffer(fields[b"features"], "<f4").astype(np.float32)
        if n_features >= 0:
            features = features.reshape(-1, n_features) if n_features else features.reshape(0, 0)
        text = {name: fields[name.encode()].decode() for name in _STRINGS}
        return Impression(
            **text,
            time_ms=int(fields[b"time_ms"]),
            cold_start=fields[b"cold_start"] == b"1",
            candidate_ids=ids,
            candidate_index=None,
            scores=np.frombuffer(fields[b"scores"], "<f8").astype(np.float64),
            features=features,
            shown=np.frombuffer(fields[b"shown"], "<i8").astype(np.int64),
            propensities=np.frombuffer(fields[b"propensities"], "<f8").astype(np.float64),
            explored=fields[b"explored"] == b"1",
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"not an impression record: {exc!s:.120}") from exc


def encode_event(record: LoggedEvent) -> Fields:
    """A click or purchase as stream fields."""
    fields: Fields = {"v": VERSION}
    for name in _EVENT_STRINGS:
        fields[name] = getattr(record, name)
    fields.update(time_ms=record.time_ms, received_ms=record.received_ms, known=int(record.known))
    return fields


def decode_event(fields: dict[bytes, bytes]) -> LoggedEvent:
    """The LoggedEvent encode_event wrote."""
    _check_version(fields)
    try:
        text = {name: fields[name.encode()].decode() for name in _EVENT_STRINGS}
        return LoggedEvent(
            **text,
            time_ms=int(fields[b"time_ms"]),
            known=fields[b"known"] == b"1",
            received_ms=int(fields[b"received_ms"]),
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"not an event record: {exc!s:.120}") from exc


def decode(kind: str, fields: dict[bytes, bytes]) -> Impression | LoggedEvent:
    """One stream entry of the given kind as the record the embedded sink writes."""
    return decode_impression(fields) if kind == IMPRESSIONS else decode_event(fields)


def _check_version(fields: dict[bytes, bytes]) -> None:
    version = fields.get(b"v")
    if version != VERSION:
        raise RecordError(f"record layout {version!r:.20}, this consumer reads {VERSION!r}")


def as_text(value: bytes | str) -> str:
    """A Redis reply's id or key as str."""
    return value.decode() if isinstance(value, bytes) else value
