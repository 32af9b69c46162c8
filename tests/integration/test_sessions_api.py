"""Live sessions against real servers: the camping story, feature parity with training, Redis
shared by processes (and its outage), hot reload under load, A/B variants."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from reco import N_PREVIOUS, Catalog, load_backend
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.memory_store import MemoryStore
from server.core.model import load_model
from server.core.requests import Candidates
from server.core.scoring import context_features, resolve_candidates
from server.core.sessions import Event, EventType
from tests.integration.conftest import DEFAULT_SEED
from tests.integration.servers import ROOT, RedisServer, ServerProcess, running
from training.features import features_from_frame

# Sessions start three hours ago on the hour: inside the server's accepted window of event times.
T0_MS = (int(time.time()) // 3600 - 3) * 3_600_000
E = pb.EventType


def product_named(catalog: Catalog, name: str) -> str:
    matches = [pid for pid, n in zip(catalog.product_ids, catalog.names, strict=True) if n == name]
    assert matches, f"the default catalog has no product named {name!r}"
    return str(matches[0])


def track(stub: pb_grpc.RecommenderStub, session: str, n: int, kind: int, product: str = "",
          at_s: float = 0.0, **fields: object) -> pb.TrackEventResponse:  # fmt: skip
    event = pb.Event(event_id=f"{session}-{n}", session_id=session, type=kind, product_id=product,
                     device_type="Desktop", traffic_source="Direct", **fields)  # type: ignore[arg-type]  # fmt: skip
    event.client_timestamp.FromMilliseconds(T0_MS + int(at_s * 1000))
    return stub.TrackEvent(pb.TrackEventRequest(event=event))


def test_the_camping_story(server: ServerProcess, bundle: Path) -> None:
    """View Hiking Boots, add a Tent to the cart, view a Sleeping Bag: camping gear comes back."""
    catalog = Catalog.load(bundle / "catalog.csv")
    boots, tent, bag = (product_named(catalog, n) for n in ("Hiking Boots", "Tent", "Sleeping Bag"))
    stub = pb_grpc.RecommenderStub(server.channel())
    session = "story-1"
    track(stub, session, 1, E.EVENT_TYPE_VIEW, boots, 0)
    track(stub, session, 2, E.EVENT_TYPE_SCROLL, "", 50, scroll_depth=0.8, time_on_page_sec=50)
    track(stub, session, 3, E.EVENT_TYPE_ADD_TO_CART, tent, 120)
    track(stub, session, 4, E.EVENT_TYPE_VIEW, bag, 180)
    state = track(
        stub, session, 5, E.EVENT_TYPE_SCROLL, "", 270, scroll_depth=0.75, time_on_page_sec=90
    )
    assert list(state.session.cart_product_ids) == [tent]
    response = stub.Recommend(pb.RecommendRequest(session_id=session, k=3))
    assert not response.cold_start
    top = list(response.items)
    subcategories = [item.subcategory for item in top]
    assert sum(s == "Camping" for s in subcategories) >= 2, [
        (i.name, i.subcategory, i.score) for i in top
    ]
    assert tent not in {item.product_id for item in top} and bag not in {
        item.product_id for item in top
    }
    assert all(item.score >= 0.7 and item.reasons for item in top)


def replay(row: pd.Series, catalog: Catalog, session: str) -> list[Event]:
    """Events that reproduce one training row's session fields exactly."""
    viewed = int(row["products_viewed_count"])
    previous = [
        row[f"prev_product_{k}"]
        for k in range(N_PREVIOUS, 0, -1)
        if row[f"prev_product_{k}"] != "NONE"
    ]
    fillers = [
        str(catalog.product_ids[k % len(catalog)]) for k in range(viewed - 1 - len(previous))
    ]
    last_ms = T0_MS + round(float(row["session_length_mins"]) * 60_000)
    events = []
    for n, product in enumerate([*fillers, *previous, row["current_product_id"]]):
        events.append(Event(f"{session}-v{n}", session, EventType.VIEW, T0_MS + n, product,
                            device_type=row["device_type"], traffic_source=row["traffic_source"]))  # fmt: skip
    in_cart = [str(catalog.product_ids[-1 - k]) for k in range(int(row["products_in_cart"]))]
    for n, product in enumerate(in_cart):
        events.append(
            Event(f"{session}-c{n}", session, EventType.ADD_TO_CART, last_ms - 1, product)
        )
    if int(row["clicked_product_image"]):
        events.append(
            Event(
                f"{session}-i",
                session,
                EventType.IMAGE_CLICK,
                last_ms - 1,
                row["current_product_id"],
            )
        )
    events.append(Event(f"{session}-s", session, EventType.SCROLL, last_ms,
                        time_on_page_sec=float(row["time_on_page_sec"]),
                        scroll_depth=float(np.float32(row["scroll_depth"]))))  # fmt: skip
    return events


@pytest.fixture(scope="module")
def training_rows(workdir: Path) -> pd.DataFrame:
    frame = pd.read_csv(workdir / "data" / "impressions.csv")
    return frame.sample(150, random_state=int(DEFAULT_SEED))


def test_tracked_session_features_equal_training_features(
    training_rows: pd.DataFrame, bundle: Path
) -> None:
    model = load_model(bundle, "lightgbm")
    store = MemoryStore()
    for i, (_, row) in enumerate(training_rows.iterrows()):
        for event in replay(row, model.catalog, f"parity-{i}"):
            store.track(event)
        state = store.get(f"parity-{i}")
        assert state is not None
        resolved = resolve_candidates(
            model, Candidates([row["rec_product_id"]]), skip_unknown=False
        )
        served = context_features(model, state.to_context(), resolved.inputs(model))
        trained = features_from_frame(
            row.to_frame().T, model.encodings, model.catalog, model.tables
        )
        np.testing.assert_array_equal(served, trained, err_msg=f"row {i}: {row.to_dict()}")


def test_tracked_session_scores_equal_offline_scores_through_the_server(
    server: ServerProcess, training_rows: pd.DataFrame, bundle: Path
) -> None:
    stub = pb_grpc.RecommenderStub(server.channel())
    catalog = Catalog.load(bundle / "catalog.csv")
    model = load_model(bundle, "lightgbm")
    rows = training_rows.head(40)
    served = []
    for i, (_, row) in enumerate(rows.iterrows()):
        session = f"served-parity-{i}"
        for event in replay(row, catalog, session):
            message = pb.Event(event_id=event.event_id, session_id=session, type=E.Value(f"EVENT_TYPE_{event.type.name}"),
                               product_id=event.product_id, device_type=event.device_type,
                               traffic_source=event.traffic_source)  # fmt: skip
            if event.time_on_page_sec is not None:
                message.time_on_page_sec = event.time_on_page_sec
            if event.scroll_depth is not None:
                message.scroll_depth = event.scroll_depth
            message.client_timestamp.FromMilliseconds(event.timestamp_ms)
            stub.TrackEvent(pb.TrackEventRequest(event=message))
        response = stub.Score(pb.ScoreRequest(context=pb.SessionContext(session_id=session),
                                              candidates=[pb.Candidate(product_id=row["rec_product_id"])]))  # fmt: skip
        served.append(response.scores[0])
    offline = load_backend(bundle, "compiled").predict(
        features_from_frame(rows, model.encodings, model.catalog, model.tables)
    )
    np.testing.assert_allclose(served, offline, rtol=0, atol=1e-6)


def test_duplicates_and_out_of_order_events_over_grpc(server: ServerProcess, bundle: Path) -> None:
    stub = pb_grpc.RecommenderStub(server.channel())
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    track(stub, "ooo", 3, E.EVENT_TYPE_VIEW, ids[2], 30)
    track(stub, "ooo", 1, E.EVENT_TYPE_VIEW, ids[0], 10)  # arrives late, happened first
    again = track(stub, "ooo", 1, E.EVENT_TYPE_VIEW, ids[0], 10)
    state = track(stub, "ooo", 2, E.EVENT_TYPE_VIEW, ids[1], 20).session
    assert again.duplicate
    assert state.current_product_id == ids[2]
    assert list(state.previous_product_ids) == [ids[1], ids[0]]
    assert state.products_viewed_count == 3 and state.events_applied == 3


def test_unknown_session_gets_a_flagged_cold_start(server: ServerProcess) -> None:
    response = pb_grpc.RecommenderStub(server.channel()).Recommend(
        pb.RecommendRequest(session_id="never-seen", k=4)
    )
    assert response.cold_start and len(response.items) == 4


def test_forget_session_is_honoured_at_once(server: ServerProcess, bundle: Path) -> None:
    stub = pb_grpc.RecommenderStub(server.channel())
    product = Catalog.load(bundle / "catalog.csv").product_ids[0]
    track(stub, "forget-me", 1, E.EVENT_TYPE_VIEW, str(product))
    assert stub.ForgetSession(pb.ForgetSessionRequest(session_id="forget-me")).existed
    assert stub.Recommend(pb.RecommendRequest(session_id="forget-me")).cold_start
    assert not stub.ForgetSession(pb.ForgetSessionRequest(session_id="forget-me")).existed


def test_several_workers_refuse_the_in_process_store(bundle: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "server", "--bundle", str(bundle), "--workers", "2"],
                            cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "would split each session across processes" in result.stderr


def test_redis_sessions_are_shared_and_outages_degrade(
    bundle: Path, logs: Path, redis_server: RedisServer
) -> None:
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    store = ("--session-store", redis_server.url)
    with (
        running(bundle, *store, log_dir=logs) as one,
        running(bundle, *store, "--workers", "2", log_dir=logs) as two,
    ):
        a, b = pb_grpc.RecommenderStub(one.channel()), pb_grpc.RecommenderStub(two.channel())
        track(a, "shared", 1, E.EVENT_TYPE_VIEW, ids[0], 0)
        track(a, "shared", 2, E.EVENT_TYPE_ADD_TO_CART, ids[1], 5)
        assert track(b, "shared", 2, E.EVENT_TYPE_ADD_TO_CART, ids[1], 5).duplicate  # seen via A
        from_b = b.Recommend(pb.RecommendRequest(session_id="shared", min_score=0.0))
        assert not from_b.cold_start and ids[1] not in {i.product_id for i in from_b.items}
        assert b.ForgetSession(pb.ForgetSessionRequest(session_id="shared")).existed
        assert a.Recommend(pb.RecommendRequest(session_id="shared")).cold_start

        redis_server.stop()
        with pytest.raises(grpc.RpcError) as err:
            track(a, "down", 1, E.EVENT_TYPE_VIEW, ids[0])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unreachable" in err.value.details()
        degraded = b.Recommend(pb.RecommendRequest(session_id="down", k=3))
        assert degraded.cold_start and len(degraded.items) == 3

        redis_server.start()
        recovered = track(a, "down", 1, E.EVENT_TYPE_VIEW, ids[0])
        assert not recovered.duplicate  # the refused event was never stored; the retry is new
        assert not b.Recommend(pb.RecommendRequest(session_id="down", min_score=0.0)).cold_start


def test_hot_reload_under_load_never_fails_a_request_and_refuses_a_broken_bundle(
    bundle: Path, bundle_b: Path, broken_bundle: Path, logs: Path, workdir: Path, short_tmp: Path
) -> None:
    link = workdir / "artifacts" / "current"
    link.unlink(missing_ok=True)
    link.symlink_to(bundle)
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    admin_address = f"unix:{short_tmp / 'admin.sock'}"
    with running(link, "--watch-seconds", "0.2", "--admin-address", admin_address,
                 log_dir=logs) as srv:  # fmt: skip
        stub = pb_grpc.RecommenderStub(srv.channel())
        request = pb.ScoreRequest(context=pb.SessionContext(current_product_id=ids[0]),
                                  candidates=[pb.Candidate(product_id=p) for p in ids[:100]])  # fmt: skip
        versions: Counter[str] = Counter()
        failures: list[grpc.RpcError] = []
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                try:
                    versions[stub.Score(request, timeout=30).model_version] += 1
                except grpc.RpcError as exc:
                    failures.append(exc)

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()

        def wait_for_version(version: str) -> None:
            deadline = time.monotonic() + 60
            while stub.GetModelInfo(pb.GetModelInfoRequest()).models[0].version != version:
                assert time.monotonic() < deadline, f"{version} never served:\n{srv.log()}"
                time.sleep(0.05)  # polling GetModelInfo, the documented way to see a swap

        try:
            old_version = stub.GetModelInfo(pb.GetModelInfoRequest()).models[0].version
            link.unlink()
            link.symlink_to(bundle_b)
            wait_for_version("variant-b")
            link.unlink()
            link.symlink_to(broken_bundle)
            with grpc.insecure_channel(admin_address) as admin_channel:  # the admin RPC path
                refused = pb_grpc.AdminStub(admin_channel).ReloadModel(
                    pb.ReloadModelRequest(reload_configured=True)
                )
        finally:
            done.set()
            for worker in workers:
                worker.join()
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert not failures, failures[:3]
    assert versions[old_version] > 0 and versions["variant-b"] > 0
    assert not refused.swapped and "parity" in refused.error.lower()
    assert info.models[0].version == "variant-b"  # the broken bundle never replaced it
    assert "broken" in info.last_reload_error


def test_ab_split_is_stable_and_close_to_the_share(
    bundle: Path, bundle_b: Path, logs: Path
) -> None:
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    with running(bundle, "--ab-bundle", str(bundle_b), "--ab-share", "0.3", log_dir=logs) as srv:
        stub = pb_grpc.RecommenderStub(srv.channel())

        def variant(session: str) -> tuple[str, str]:
            response = stub.Score(pb.ScoreRequest(context=pb.SessionContext(session_id=session, current_product_id=ids[0]),
                                                  candidates=[pb.Candidate(product_id=ids[1])]))  # fmt: skip
            return response.variant, response.model_version

        seen = {f"ab-{i}": variant(f"ab-{i}") for i in range(600)}
        assert all(variant(s) == seen[s] for s in list(seen)[:100])  # a session keeps its variant
        share_b = sum(v == ("B", "variant-b") for v in seen.values()) / len(seen)
        assert abs(share_b - 0.3) < 0.07  # 600 sessions: sd ~0.019
        assert {v for v, _ in seen.values()} == {"A", "B"}
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert sorted((m.variant, round(m.traffic_share, 2)) for m in info.models) == [
            ("A", 0.7),
            ("B", 0.3),
        ]
