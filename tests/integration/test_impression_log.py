"""The impression log through the public API: request ids, propensities, clicks (known,
orphan, not shown), logged Score, the metrics, and what a kill -9 can and cannot lose."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest

from reco import log_kind
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.servers import ServerProcess, running


def track(stub: pb_grpc.RecommenderStub, event_id: str, kind: int, product: str,
          session: str = "log-s1", request_id: str = "") -> pb.TrackEventResponse:  # fmt: skip
    event = pb.Event(event_id=event_id, session_id=session, type=kind, product_id=product,
                     request_id=request_id)  # fmt: skip
    return stub.TrackEvent(pb.TrackEventRequest(event=event), timeout=10)


def metrics(server: ServerProcess) -> str:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def complete_files(directory: Path, kind: str) -> list[Path]:
    return sorted(p for p in directory.iterdir() if log_kind(p.name) == kind)


def test_recommend_clicks_and_score_are_logged(bundle: Path, logs: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "impressions"
    with running(bundle, "--impression-log-dir", str(log_dir),
                 "--impression-log-interval-seconds", "0.2", "--explore-epsilon", "1",
                 "--explore-seed", "5", log_dir=logs) as server:  # fmt: skip
        stub = pb_grpc.RecommenderStub(server.channel())
        track(stub, "v1", pb.EVENT_TYPE_VIEW, "PROD0001")
        answer = stub.Recommend(pb.RecommendRequest(session_id="log-s1", k=4, min_score=0),
                                timeout=10)  # fmt: skip
        assert answer.request_id and len(answer.items) == 4
        # epsilon 1: every slate is random, every propensity epsilon / eligible candidates
        props = {round(item.propensity, 12) for item in answer.items}
        assert len(props) == 1 and 0 < props.pop() < 0.05
        shown = answer.items[0].product_id
        assert not track(stub, "c1", pb.EVENT_TYPE_RECOMMENDATION_CLICK, shown,
                         request_id=answer.request_id).duplicate  # fmt: skip
        with pytest.raises(grpc.RpcError) as not_shown:
            track(stub, "c2", pb.EVENT_TYPE_RECOMMENDATION_CLICK, "PROD0001",
                  request_id=answer.request_id)  # fmt: skip
        assert not_shown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "event.product_id was not shown by request" in not_shown.value.details()
        with pytest.raises(grpc.RpcError) as no_id:
            track(stub, "c3", pb.EVENT_TYPE_RECOMMENDATION_CLICK, shown)
        assert no_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "event.request_id must name the response" in no_id.value.details()
        track(stub, "c4", pb.EVENT_TYPE_RECOMMENDATION_CLICK, shown, request_id="gone-1")
        track(stub, "p1", pb.EVENT_TYPE_PURCHASE, shown, request_id=answer.request_id)
        scored = stub.Score(pb.ScoreRequest(context=pb.SessionContext(session_id="log-s2"),
                                            candidate_ids=["PROD0002", "PROD0003"], min_score=0,
                                            log_impression=True), timeout=10)  # fmt: skip
        assert scored.request_id
        unlogged = stub.Score(pb.ScoreRequest(candidate_ids=["PROD0002"]), timeout=10)
        assert unlogged.request_id == ""
        text = metrics(server)
        assert "reco_orphan_clicks_total 1.0" in text
        assert 'reco_ab_clicks{variant="A"} 1.0' in text
        assert 'reco_ab_shown{variant="A"} 6.0' in text  # 4 slots + 2 ranked Score items
    # SIGTERM flushed what was queued
    impressions = pq.read_table(complete_files(log_dir, "impressions")).to_pylist()
    by_id = {row["request_id"]: row for row in impressions}
    rec = by_id[answer.request_id]
    assert rec["rpc"] == "Recommend" and rec["variant"] == "A" and rec["explored"]
    assert rec["shown_ids"] == [item.product_id for item in answer.items]
    assert rec["policy"] == "epsilon-greedy(1)"
    rows = np.frombuffer(rec["features"], "<f4").reshape(-1, rec["n_features"])
    assert rows.shape == (len(rec["candidate_ids"]), 27)
    # They are the rows that were scored (the server scores natively, the kernel hands them to
    # the log): LightGBM on them gives the logged scores.
    import lightgbm

    booster = lightgbm.Booster(model_file=str(bundle / "model.txt"))
    np.testing.assert_allclose(booster.predict(rows), rec["scores"], rtol=0, atol=1e-6)
    assert by_id[scored.request_id]["shown_ids"] == [i.product_id for i in scored.ranked]
    assert len(by_id) == 2  # warm-up calls and the unlogged Score are not in the log
    events = pq.read_table(complete_files(log_dir, "events")).to_pylist()
    assert sorted((e["event_id"], e["known"]) for e in events) == [
        ("c1", True),
        ("c4", False),
        ("p1", True),
    ]


def test_a_killed_server_loses_at_most_its_queue(bundle: Path, logs: Path, tmp_path: Path) -> None:
    """kill -9 mid-traffic: every file under a complete name reads whole, and the impressions
    in them number at least what was answered and not counted dropped, minus the queue's
    capacity (a queue this small also overflows: those drops are counted, not lost unseen)."""
    log_dir, queue = tmp_path / "impressions", 40
    server = ServerProcess(bundle, "--impression-log-dir", str(log_dir),
                           "--impression-log-interval-seconds", "0.3", "--impression-log-queue",
                           str(queue), log_dir=logs).wait_serving()  # fmt: skip
    try:
        stub = pb_grpc.RecommenderStub(server.channel())
        answered = 0
        start = time.monotonic()
        while time.monotonic() - start < 3.0:
            stub.Recommend(pb.RecommendRequest(session_id=f"kill-{answered}"), timeout=10)
            answered += 1
        dropped = sum(
            float(line.split()[-1]) for line in metrics(server).splitlines()
            if line.startswith('reco_log_records_dropped_total{kind="impressions"}')
        )  # fmt: skip
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    finally:
        server.stop()
    files = complete_files(log_dir, "impressions")
    assert files
    logged = sum(pq.read_table(f).num_rows for f in files)  # a half-written file would not read
    kept = answered - int(dropped)
    assert kept - queue <= logged <= kept
    # a restart removes any temporary file the kill left behind
    (log_dir / ".impressions-20260101T000000Z-4999999-ff.parquet.tmp").write_bytes(b"PAR1")
    with running(bundle, "--impression-log-dir", str(log_dir), log_dir=logs):
        assert not list(log_dir.glob(".*.tmp"))
