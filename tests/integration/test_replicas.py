"""Scale-out on real processes: three TLS replicas sharing one Redis, Envoy in front
(deploy/envoy/envoy.yaml), client-side round_robin, max-connection-age behind an L4 balancer,
and a replica killed under load with no retried call failing."""

from __future__ import annotations

import itertools
import json
import re
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from reco import Catalog
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.certs import Certs, make_certs
from tests.integration.conftest import renamed_copy, start_redis
from tests.integration.envoy import EnvoyProcess
from tests.integration.servers import RedisServer, ServerProcess
from tests.integration.tcp_proxy import RoundRobinTcpProxy

REPLICAS = 3
# Short here so the test sees several GOAWAYs; the default is 300 s.
CONNECTION_AGE = "1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("replica-certs"))


@pytest.fixture(scope="module")
def shared_redis(logs: Path) -> Iterator[RedisServer]:
    redis_server = start_redis(logs)
    yield redis_server
    redis_server.stop()


@pytest.fixture(scope="module")
def replicas(
    bundle: Path, workdir: Path, logs: Path, certs: Certs, shared_redis: RedisServer
) -> Iterator[list[ServerProcess]]:
    """One bundle per replica (the same model under the names replica-0..2), so each answer
    says which replica gave it."""
    credentials = grpc.ssl_channel_credentials(certs.ca.read_bytes())
    started = []
    for i in range(REPLICAS):
        target = workdir / "artifacts" / f"replica-{i}"
        copy = target if target.exists() else renamed_copy(bundle, target, f"replica-{i}")
        started.append(ServerProcess(
            copy, "--session-store", shared_redis.url, "--tls-cert", str(certs.server.cert),
            "--tls-key", str(certs.server.key), "--max-connection-age-seconds", CONNECTION_AGE,
            log_dir=logs, credentials=credentials,
        ))  # fmt: skip
    try:
        for replica in started:
            replica.wait_serving()
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture(scope="module")
def envoy(replicas: list[ServerProcess], certs: Certs, logs: Path) -> Iterator[EnvoyProcess]:
    proxy = EnvoyProcess(logs, [r.port for r in replicas], certs.ca, "localhost")
    try:
        proxy.wait_healthy(REPLICAS)
        yield proxy
    finally:
        proxy.stop()


def tls_channel(target: str, certs: Certs, *options: tuple[str, object]) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(certs.ca.read_bytes())
    return grpc.secure_channel(target, credentials, options=[
        ("grpc.ssl_target_name_override", "localhost"), *options])  # fmt: skip


def served_calls(replica: ServerProcess, rpc: str) -> float:
    """reco_requests_total{rpc, code="OK"} on one replica's metrics port."""
    url = f"http://127.0.0.1:{replica.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    pattern = rf'^reco_requests_total\{{code="OK",rpc="{rpc}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def view(session: str, n: int, product: str) -> pb.TrackEventRequest:
    return pb.TrackEventRequest(event=pb.Event(
        event_id=f"{session}-{n}", session_id=session, type=pb.EVENT_TYPE_VIEW,
        product_id=product))  # fmt: skip


def test_one_shopper_spread_over_replicas_sees_one_session(
    envoy: EnvoyProcess, replicas: list[ServerProcess], bundle: Path
) -> None:
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    before = [served_calls(r, "TrackEvent") for r in replicas]
    with grpc.insecure_channel(envoy.target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        for n in range(12):
            tracked = stub.TrackEvent(view("one-shopper", n, ids[n % 4]), timeout=10)
        assert tracked.session.events_applied == 12
        answers = [stub.Recommend(pb.RecommendRequest(session_id="one-shopper", k=5), timeout=10)
                   for _ in range(12)]  # fmt: skip
    tracked_by = [served_calls(r, "TrackEvent") - b for r, b in zip(replicas, before, strict=True)]
    assert sum(tracked_by) == 12 and sum(1 for c in tracked_by if c) >= 2, tracked_by
    assert len({a.model_version for a in answers}) >= 2  # answered by several replicas
    assert not any(a.cold_start for a in answers)
    slates = {tuple(item.product_id for item in a.items) for a in answers}
    assert len(slates) == 1, slates  # every replica read the same session


def test_client_round_robin_spreads_calls_where_pick_first_does_not(
    replicas: list[ServerProcess], certs: Certs
) -> None:
    """What a client balancing over the headless Service does (docs/deployment.md)."""
    target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)
    seen: dict[str, Counter[str]] = {}
    for policy in ("round_robin", "pick_first"):
        with tls_channel(target, certs, ("grpc.lb_policy_name", policy)) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            versions = [stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).models[0].version
                        for _ in range(30)]  # fmt: skip
        seen[policy] = Counter(versions)
    assert len(seen["round_robin"]) == REPLICAS, seen
    assert len(seen["pick_first"]) == 1, seen


def test_max_connection_age_moves_a_long_lived_channel_behind_an_l4_balancer(
    replicas: list[ServerProcess], certs: Certs
) -> None:
    """A Kubernetes Service balances connections, not calls: one channel stays on one replica
    until the replica's max connection age sends GOAWAY and the channel reconnects."""
    with RoundRobinTcpProxy([r.port for r in replicas]) as proxy:
        with tls_channel(proxy.target, certs) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            versions: list[str] = []
            deadline = time.monotonic() + 30
            while len(set(versions)) < REPLICAS and time.monotonic() < deadline:
                info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
                versions.append(info.models[0].version)
                time.sleep(0.02)  # a client's pace: the age is what moves the channel
        connections = list(proxy.connections)
    assert len(set(versions)) == REPLICAS, Counter(versions)
    assert len(connections) >= REPLICAS  # one channel, reconnected after each GOAWAY
    # Calls stayed on a connection between GOAWAYs: the channel did not hop per call.
    changes = sum(1 for a, b in itertools.pairwise(versions) if a != b)
    assert changes <= len(connections), (changes, len(connections))


class Shopper(threading.Thread):
    """One client with its own channel to Envoy: events, Recommend and Score in turn."""

    def __init__(self, target: str, name: str, ids: list[str], stop: threading.Event) -> None:
        super().__init__()
        self.target = target
        self.session = name
        self.ids = ids
        self.stop_event = stop
        self.calls = 0
        self.failures: Counter[str] = Counter()
        # Calls a replica shed (RESOURCE_EXHAUSTED, "retry later"): its overload answer, never
        # retried by Envoy (that would add load), counted apart from failures. On this shared
        # 2-core VM the last replica standing sometimes queues a call past --max-queue-ms.
        self.shed = 0

    def run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            score = pb.ScoreRequest(context=pb.SessionContext(current_product_id=self.ids[0]),
                                    candidate_ids=self.ids[1:51])  # fmt: skip
            recommend = pb.RecommendRequest(session_id=self.session, k=5)
            n = 0
            while not self.stop_event.is_set():
                event = view(self.session, n, self.ids[n % 50])
                for method, request in ((stub.TrackEvent, event), (stub.Recommend, recommend),
                                        (stub.Score, score)):  # fmt: skip
                    try:
                        method(request, timeout=5)
                    except grpc.RpcError as exc:
                        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            self.shed += 1
                        else:
                            self.failures[f"{exc.code().name}: {exc.details()}"[:120]] += 1
                    self.calls += 1
                n += 1


def test_killing_then_stopping_replicas_under_load_fails_no_retried_call(
    envoy: EnvoyProcess, replicas: list[ServerProcess], bundle: Path, logs: Path
) -> None:
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    stop = threading.Event()
    shoppers = [Shopper(envoy.target, f"kill-{i}", ids, stop) for i in range(6)]
    before = envoy.stats()
    for shopper in shoppers:
        shopper.start()
    try:
        _wait(lambda: sum(s.calls for s in shoppers) >= 300)
        at_kill = sum(s.calls for s in shoppers)
        replicas[1].process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _wait(lambda: envoy.healthy_hosts() == REPLICAS - 1)
        noticed = time.monotonic() - killed
        # Outlier detection ejects it first; the health checks (every second) must follow
        # (they once ran every 60 s: Envoy's no_traffic_interval, see deploy/envoy/envoy.yaml).
        _wait(lambda: envoy.failed_active_health_check(replicas[1].port), timeout=20)
        _wait(lambda: sum(s.calls for s in shoppers) >= at_kill + 600)
        # Then a rolling restart's SIGTERM: health NOT_SERVING, drain, stop; one replica left.
        at_term = sum(s.calls for s in shoppers)
        replicas[2].process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        _wait(lambda: envoy.healthy_hosts() == REPLICAS - 2, timeout=20)
        noticed_term = time.monotonic() - terminated
        replicas[2].process.wait(30)
        _wait(lambda: sum(s.calls for s in shoppers) >= at_term + 300)
    finally:
        stop.set()
        for shopper in shoppers:
            shopper.join(30)
    after = envoy.stats()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in (
        "upstream_rq_retry", "upstream_rq_retry_success", "upstream_rq_retry_overflow",
        "upstream_cx_connect_fail", "health_check.failure",
        "outlier_detection.ejections_enforced_total")}  # fmt: skip
    failures = sum((s.failures for s in shoppers), Counter())
    calls = sum(s.calls for s in shoppers)
    report = {"calls": calls, "calls_before_kill": at_kill, "calls_before_sigterm": at_term,
              "failed": dict(failures), "shed": sum(s.shed for s in shoppers),
              "seconds_until_envoy_saw_the_kill": round(noticed, 2),
              "seconds_until_envoy_saw_the_sigterm": round(noticed_term, 2),
              "envoy": delta}  # fmt: skip
    (logs / "replica-kill.json").write_text(json.dumps(report, indent=2))
    print(f"replica kill: {json.dumps(report)}")
    assert not failures, report
    assert sum(s.shed for s in shoppers) <= calls // 100, report  # overload stays the exception
    assert delta["upstream_rq_retry"] > 0, report  # the kill did hit calls, and they were retried
    assert delta["upstream_rq_retry_overflow"] == 0, report


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)  # other threads' and processes' progress: poll it
