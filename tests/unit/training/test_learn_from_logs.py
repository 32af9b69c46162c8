"""The log written by the server's sink, read back by training: attribution (window, product,
purchases after a click), the readout's clustered intervals, the sample-ratio check."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from server.core.impressions import Impression, ImpressionLog
from server.core.parquet_sink import ParquetSink
from server.core.sessions import Event, EventType
from training.features import CONTEXT_FREE_FEATURES, mask_context
from training.logs import attribute, read_events, read_responses
from training.readout import clustered_ratio, readout
from training.schema import DataError

IDS = np.array([f"P{i}" for i in range(6)])


def write_log(directory: Path) -> list[str]:
    log = ImpressionLog(ParquetSink(directory))
    request_ids = []
    now_ms = time.time_ns() // 1_000_000 - 10_000  # the server's clock, shortly before the clicks
    for n, (variant, session) in enumerate([("A", "s1"), ("A", "s1"), ("B", "s2")]):
        rid = log.new_request_id()
        rows = np.full((4, 3), n, np.float32)
        imp = Impression(rid, now_ms + n * 1000, "Recommend", session, "", "v", variant,
                         "greedy", False, IDS, np.array([0, 1, 2, 3]), np.linspace(0.9, 0.6, 4),
                         rows, np.array([2, 0], dtype=np.int64), np.array([1.0, 0.25]))  # fmt: skip
        log.record(imp, (str(IDS[2]), str(IDS[0])))
        request_ids.append(rid)
    log.flush()  # impressions are in a complete file before any click arrives

    def event(kind: EventType, rid: str, product: str, eid: str, session: str = "s1") -> Event:
        return Event(eid, session, kind, 5_000_000, product, request_id=rid)

    log.event(event(EventType.RECOMMENDATION_CLICK, request_ids[0], "P2", "c1"))
    log.event(event(EventType.PURCHASE, request_ids[0], "P2", "b1"))
    log.event(event(EventType.RECOMMENDATION_CLICK, request_ids[2], "P0", "c2", "s2"))
    log.close()
    return request_ids


def test_clicks_join_their_slot_and_purchases_follow(tmp_path: Path) -> None:
    write_log(tmp_path)
    responses = read_responses(tmp_path)
    assert len(responses) == 3 and responses.features.shape == (12, 3)
    slots = attribute(responses, read_events(tmp_path), window_seconds=3600)
    frame = slots.frame
    assert frame["product_id"].tolist() == ["P2", "P0"] * 3
    assert frame["propensity"].tolist() == [1.0, 0.25] * 3
    assert slots.clicked.tolist() == [True, False, False, False, False, True]
    assert slots.purchased.tolist() == [True, False, False, False, False, False]
    # the exact logged rows of the shown candidates
    assert slots.features[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    # a window shorter than the click's delay (by the server's clock) attributes nothing
    late = read_events(tmp_path).assign(received_ms=lambda f: f["received_ms"] + 10_000_000)
    assert not attribute(responses, late, window_seconds=60).clicked.any()


def test_readout_per_variant(tmp_path: Path) -> None:
    write_log(tmp_path)
    slots = attribute(read_responses(tmp_path), read_events(tmp_path), 3600)
    result = readout(slots, {"A": 0.5, "B": 0.5})
    by = {v["variant"]: v for v in result["variants"]}
    assert by["A"]["shown"] == 4 and by["A"]["clicks"] == 1 and by["B"]["clicks"] == 1
    assert result["differences"]["B"]["value"] == pytest.approx(0.5 - 0.25)
    assert result["sample_ratio"]["sessions"] == {"A": 1, "B": 1}


def test_clustered_interval_is_wider_than_the_binomial_when_sessions_cluster() -> None:
    rng = np.random.default_rng(0)
    rate = rng.beta(1, 3, 400)  # shoppers differ: their slots are correlated
    shown = np.full(400, 20.0)
    clicks = rng.binomial(20, rate).astype(float)
    ctr, se = clustered_ratio(clicks, shown)
    binomial = np.sqrt(ctr * (1 - ctr) / shown.sum())
    assert se > 1.5 * binomial


def test_no_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no complete impressions"):
        read_responses(tmp_path)


def test_context_free_rows_keep_only_the_candidate() -> None:
    names = ("category_enc", "rec_category_enc", "rec_price", "affinity_current", "rec_popularity")
    masked = mask_context(np.ones((2, 5), np.float32), names)
    kept = [n for n, v in zip(names, masked[0], strict=True) if not np.isnan(v)]
    assert tuple(kept) == CONTEXT_FREE_FEATURES
