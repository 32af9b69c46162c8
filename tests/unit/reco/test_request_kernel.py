"""The request kernel's pure-Python side: the id hash (the C probes with the same) and the id
table's layout."""

from __future__ import annotations

import numpy as np
import pytest

from reco._request_kernel import IdTable, id_hash


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
