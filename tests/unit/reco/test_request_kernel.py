"""The request kernel's pure-Python side: the id hash (the C probes with the same), the id
table's layout, and the packed view history a sequence kernel reads (RecoHistory)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from reco import Histories, ViewHistory
from reco._request_kernel import (
    IdTable,
    id_hash,
    id_hashes,
    pack_history,
    packed_history_length,
)


def test_the_id_hash_is_64_bit_fnv_1a() -> None:
    # The published FNV-1a 64 test vectors.
    assert id_hash(b"") == 0xCBF29CE484222325
    assert id_hash(b"a") == 0xAF63DC4C8601EC8C
    assert id_hash(b"foobar") == 0x85944171F73967E8


def test_the_id_table_holds_every_id_once_at_a_slot_its_probe_reaches() -> None:
    index = {f"PROD{i:04d}": i for i in range(200)} | {"ü-product": 200}
    table = IdTable(index)
    slot, offset, value, data = table._arrays
    n_slots = len(slot)
    assert n_slots & (n_slots - 1) == 0 and n_slots > 2 * len(index) - 1
    assert sorted(e for e in slot.tolist() if e >= 0) == list(range(len(index)))
    raw = data.tobytes()
    for e in range(len(index)):
        product_id = raw[offset[e] : offset[e + 1]].decode()
        assert index[product_id] == value[e]
        # Linear probing from the id's hash reaches its entry before any empty slot.
        s = id_hash(product_id.encode()) & (n_slots - 1)
        while slot[s] != e:
            assert slot[s] >= 0
            s = (s + 1) & (n_slots - 1)
    assert not any(a.flags.writeable for a in table._arrays)


def test_an_id_holding_a_nul_cannot_be_tabled() -> None:
    with pytest.raises(ValueError, match="NUL"):
        IdTable({"a\x00b": 0})


def test_an_empty_catalog_gives_a_table_of_empty_slots() -> None:
    slot, offset, value, _ = IdTable({})._arrays
    assert np.all(slot == -1) and offset.tolist() == [0] and len(value) == 0


def test_a_packed_history_holds_the_vectors_histories_builds() -> None:
    catalog_index = {"A": 0, "B": 1, "C": 2}
    history = ViewHistory.of_views(["X", "A", "B", "A", "Y"])  # X, Y: not in the catalog
    packed = pack_history(history, catalog_index)
    n, total, landing = struct.unpack_from("<qdq", packed)
    assert packed_history_length(packed) == n == 4
    index = struct.unpack_from(f"<{n}q", packed, 24)
    weights = struct.unpack_from(f"<{n}d", packed, 24 + 8 * n)
    vectors = Histories.of([history], catalog_index)
    assert list(index) == vectors.index[0].tolist() == [-1, 0, 1, -1]
    assert list(weights) == vectors.weight[0].tolist()
    assert total == vectors.total[0] and landing == vectors.landing[0] == -1


def test_an_empty_history_packs_as_histories_pads_it() -> None:
    packed = pack_history(ViewHistory(), {"A": 0})
    assert struct.unpack("<qdqqd", packed) == (1, 0.0, -1, -1, 0.0)
    vectors = Histories.of([ViewHistory()], {"A": 0})
    assert vectors.index.tolist() == [[-1]] and vectors.weight.tolist() == [[0.0]]


def test_a_damaged_history_is_refused_naming_it() -> None:
    damaged = ViewHistory(("A", "B"), (1.0,), 1.5, "A")
    with pytest.raises(ValueError, match="2 product ids but 1 weights"):
        pack_history(damaged, {"A": 0})
    assert packed_history_length(b"\0" * 10) is None
    assert packed_history_length(struct.pack("<qdq", 2, 1.0, -1) + b"\0" * 16) is None
    assert packed_history_length(struct.pack("<qdq", 0, 1.0, -1)) is None


def test_the_vectorised_hash_is_the_scalar_one() -> None:
    ids = [b"", b"a", b"foobar", "ü-product".encode(), b"PROD0000001", b"x" * 130]
    assert id_hashes(ids).tolist() == [id_hash(data) for data in ids]


def test_a_table_crowded_into_few_home_slots_still_probes_right() -> None:
    # Ids hashing to the same home slots (a 4-slot table's low bits collide often).
    index = {f"p{i}": i for i in range(3)}
    slot, *_ = IdTable(index)._arrays
    for product_id, entry in index.items():  # entries in the index's order: entry == value
        s = id_hash(product_id.encode()) & (len(slot) - 1)
        while slot[s] != entry:
            assert slot[s] >= 0
            s = (s + 1) & (len(slot) - 1)
