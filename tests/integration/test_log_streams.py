"""The shared impression log: servers XADD to Redis Streams, `python -m server.log_consumer` writes
the embedded sink's files; a killed consumer or a killed Redis loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from reco import log_kind
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.impressions import EVENTS, IMPRESSIONS, Impression, ImpressionLog, LoggedEvent
from server.core.log_consumer import ConsumerSettings, LogConsumer
from server.core.parquet_sink import ParquetSink
from server.core.redis_log import RedisSink
from tests.integration.servers import DURABLE_REDIS, RedisServer, ServerProcess, running
from training.logs import attribute, read_events, read_responses

REPO = Path(__file__).resolve().parents[2]


def rows(directory: Path, kind: str) -> list[dict[str, object]]:
    files = sorted(p for p in directory.iterdir() if log_kind(p.name) == kind)
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def sample_records(log: ImpressionLog) -> tuple[list[Impression], list[LoggedEvent]]:
    """A Recommend over a catalog, one over another catalog, a Score with its own ids (one
    with a non-ASCII id), and events, known and not."""
    catalog = np.array([f"P{i}" for i in range(10)])
    features = np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32)
    features[1, 2] = np.nan
    impressions = [
        Impression(log.new_request_id(), 1_700_000_000_000, "Recommend", "s1", "c1", "v1", "A",
                   "epsilon-greedy(0.1)", False, catalog, np.array([3, 1, 7, 0]),
                   np.array([0.9, 0.5, 0.25, 0.1]), features, np.array([1, 0]),
                   np.array([0.925, 0.025]), explored=True),
        Impression(log.new_request_id(), 1_700_000_000_500, "Recommend", "s2", "", "v2", "B",
                   "greedy", True, np.array(["Q0", "Q1", "Q2"]), np.array([2, 0]),
                   np.array([0.5, 0.4]), np.zeros((2, 5), np.float32), np.array([1]),
                   np.array([1.0])),
        Impression(log.new_request_id(), 1_700_000_001_000, "Score", "s3", "c3", "v1", "A",
                   "greedy", False, ["X1", "Ünï", "X3"], None, np.array([0.1, 0.9, 0.5]),
                   np.ones((3, 5), np.float32), np.array([1, 2]), np.ones(2)),
    ]  # fmt: skip
    events = [
        LoggedEvent("recommendation_click", "e1", "s1", impressions[0].request_id, "P1",
                    1_700_000_002_000, True, "A", 1_700_000_002_010),
        LoggedEvent("recommendation_click", "e2", "s9", "elsewhere-1", "Z", 5, False, ""),
        LoggedEvent("purchase", "e3", "s1", impressions[0].request_id, "P1",
                    1_700_000_003_000, True, "A", 1_700_000_003_010),
    ]  # fmt: skip
    return impressions, events


@contextmanager
def consuming(settings: ConsumerSettings) -> Iterator[LogConsumer]:
    """A LogConsumer on a thread, stopped (its buffers written and acknowledged) on exit."""
    consumer = LogConsumer(settings)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        stop.set()
        thread.join(20)
        assert not thread.is_alive()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling files and Redis, which have no readiness stream


def consumer_process(redis: RedisServer, out: Path, logs: Path, name: str,
                     *extra: str) -> subprocess.Popen[bytes]:  # fmt: skip
    stderr = (logs / f"consumer-{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "server.log_consumer", "--log-level", "INFO", "--redis", redis.url, "--out",
         str(out), "--consumer", name, *extra],
        cwd=REPO, stderr=stderr, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def pending(redis: RedisServer, kind: str) -> int:
    """Entries delivered to a consumer of the group and not acknowledged (-1: no group yet)."""
    import redis as redis_py

    try:
        return int(redis.client().xpending(f"reco:log:{kind}", "reco-log")["pending"])
    except redis_py.ResponseError:
        return -1


def test_records_through_redis_are_the_embedded_sinks_files(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    embedded, shared = tmp_path / "embedded", tmp_path / "shared"
    direct = ImpressionLog(ParquetSink(embedded))
    impressions, events = sample_records(direct)
    sink = RedisSink(redis_server.url, max_len=1000)
    for kind, records in ((IMPRESSIONS, impressions), (EVENTS, events)):
        direct.sink.write(kind, records)  # type: ignore[union-attr]
        sink.write(kind, records)
    settings = ConsumerSettings(redis_server.url, shared, consumer="c1", interval_seconds=0.1)
    with consuming(settings) as consumer:
        wait_for(lambda: consumer.written == {IMPRESSIONS: 3, EVENTS: 3}, "the consumer's files")
    for kind in (IMPRESSIONS, EVENTS):
        got, want = rows(shared, kind), rows(embedded, kind)
        assert len(got) == len(want) == 3
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            for column in w:
                if column == "features":  # NaN != NaN: compare the bytes
                    assert g[column] == w[column]
                else:
                    assert g[column] == w[column], column
        assert pending(redis_server, kind) == 0
    # the readers take them unchanged
    slots = attribute(read_responses(shared), read_events(shared), 3600)
    assert int(slots.clicked.sum()) == 1 and int(slots.purchased.sum()) == 1


def test_a_killed_consumer_loses_nothing(
    redis_server: RedisServer, tmp_path: Path, logs: Path
) -> None:
    """Consumer a reads every entry and is killed before writing a file: they stay pending;
    consumer b re-claims them once idle and writes each exactly once."""
    out = tmp_path / "logs"
    RedisSink(redis_server.url, max_len=10_000).write(IMPRESSIONS, numbered(300))
    a = consumer_process(redis_server, out, logs, "a", "--interval-seconds", "600",
                         "--batch", "100000")  # fmt: skip
    try:
        wait_for(lambda: pending(redis_server, IMPRESSIONS) == 300, "a to read every entry")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
    finally:
        a.kill()
    assert not list(out.glob("impressions-*"))
    b = consumer_process(redis_server, out, logs, "b", "--interval-seconds", "0.2",
                         "--claim-idle-seconds", "0.5", "--batch", "128")  # fmt: skip
    try:
        wait_for(lambda: pending(redis_server, IMPRESSIONS) == 0, "b to re-claim and write")
        b.send_signal(signal.SIGTERM)
        assert b.wait(20) == 0
    finally:
        b.kill()
    ids = sorted(str(row["request_id"]) for row in rows(out, IMPRESSIONS))
    assert ids == sorted(f"r-{i}" for i in range(300))
    assert "re-claimed" in (logs / "consumer-b.log").read_text()


def numbered(count: int) -> list[Impression]:
    """count copies of the sample impressions, request ids r-0 .. r-(count-1)."""
    impressions, _ = sample_records(ImpressionLog(None))
    fields = [{f: getattr(r, f) for f in Impression.__slots__} for r in impressions]
    return [Impression(**{**fields[i % 3], "request_id": f"r-{i}"}) for i in range(count)]


def test_two_consumers_share_the_work_and_skip_what_is_not_a_record(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    out = tmp_path / "logs"
    RedisSink(redis_server.url, max_len=10_000).write(IMPRESSIONS, numbered(400))
    redis_server.client().xadd("reco:log:impressions", {"v": "1", "request_id": "half"})
    redis_server.client().xadd("reco:log:impressions", {"v": "9", "anything": "x"})
    settings = ConsumerSettings(redis_server.url, out, consumer="one", batch=50,
                                interval_seconds=0.1)  # fmt: skip
    other = ConsumerSettings(redis_server.url, out, consumer="two", batch=50, interval_seconds=0.1)
    with consuming(settings) as one, consuming(other) as two:
        wait_for(lambda: one.written[IMPRESSIONS] + two.written[IMPRESSIONS] >= 400, "400 rows")
        wait_for(lambda: one.rejected + two.rejected == 2, "both bad entries")
    assert one.written[IMPRESSIONS] and two.written[IMPRESSIONS]  # both took a share
    ids = [str(row["request_id"]) for row in rows(out, IMPRESSIONS)]
    assert sorted(ids) == sorted(f"r-{i}" for i in range(400))  # each exactly once
    assert pending(redis_server, IMPRESSIONS) == 0  # the bad entries were acknowledged too


def test_two_replicas_share_one_log_and_survive_a_redis_outage(
    bundle: Path, logs: Path, tmp_path: Path, make_redis: Callable[..., RedisServer]
) -> None:
    """Replica 1 serves, replica 2 takes the click (an orphan there); Redis (fsyncing every
    write) is killed -9: both keep answering and count sink errors; once it is back the queued
    records arrive, and the consumer's files attribute the click across replicas."""
    redis_server = make_redis(*DURABLE_REDIS)
    out = tmp_path / "logs"
    flags = ("--impression-log-redis", redis_server.url, "--impression-log-interval-seconds",
             "0.2")  # fmt: skip
    with running(bundle, *flags, log_dir=logs) as one, running(bundle, *flags, log_dir=logs) as two:
        serve, click = (
            pb_grpc.RecommenderStub(one.channel()),
            pb_grpc.RecommenderStub(two.channel()),
        )
        before = serve.Recommend(pb.RecommendRequest(session_id="r-s1", k=3), timeout=10)
        shown = before.items[0].product_id
        event = pb.Event(event_id="c1", session_id="r-s1", request_id=before.request_id,
                         type=pb.EVENT_TYPE_RECOMMENDATION_CLICK, product_id=shown)  # fmt: skip
        click.TrackEvent(pb.TrackEventRequest(event=event), timeout=10)
        wait_for(lambda: redis_server.client().xlen("reco:log:impressions") >= 1, "the XADD")
        assert redis_server.process is not None
        redis_server.process.kill()
        redis_server.process.wait(10)
        during = [serve.Recommend(pb.RecommendRequest(session_id=f"out-{i}", k=3), timeout=10)
                  for i in range(20)]  # fmt: skip
        assert all(answer.items for answer in during)
        wait_for(lambda: "reco_log_sink_errors_total" in metrics_with_errors(one), "an error")
        redis_server.start()  # from its append-only file: the first XADDs are still there
        wait_for(lambda: redis_server.client().xlen("reco:log:impressions") >= 21,
                 "the queued records after Redis returned")  # fmt: skip
    settings = ConsumerSettings(redis_server.url, out, consumer="c1", interval_seconds=0.1)
    with consuming(settings) as consumer:
        wait_for(lambda: consumer.written[IMPRESSIONS] >= 20, "the consumer's files")
    ids = {row["request_id"] for row in rows(out, IMPRESSIONS)}
    assert {answer.request_id for answer in during} | {before.request_id} <= ids
    (clicked,) = rows(out, EVENTS)
    assert clicked["request_id"] == before.request_id and clicked["known"] is False
    slots = attribute(read_responses(out), read_events(out), 3600)
    hit = slots.frame["request_id"].to_numpy()[slots.clicked]
    assert list(hit) == [before.request_id]


def metrics_with_errors(server: ServerProcess) -> str:
    """The metrics lines counting sink errors above zero."""
    import urllib.request

    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return "\n".join(
        line for line in text.splitlines()
        if line.startswith("reco_log_sink_errors_total") and float(line.split()[-1]) > 0
    )  # fmt: skip
