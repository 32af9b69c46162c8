"""The sequence feature set served: session stores fold the history as training does (skew 0,
in the numpy builder and in the request kernel), through the memory store and Redis, and a real
server scores a sequence bundle from it on the native path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reco import FEATURE_SETS, SEQUENCE_FEATURES, SessionContext, load_backend
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel, load_model
from server.core.native import native_rows
from server.core.redis_store import RedisStore
from server.core.requests import Candidates
from server.core.scoring import resolve_candidates
from server.core.sessions import Event, EventType, SessionStore
from tests.integration.servers import RedisServer, running
from training.features import features_from_frame
from training.pages import page_views

# Sessions start three hours ago on the hour: inside the server's accepted window of event times.
T0_MS = (int(time.time()) // 3600 - 3) * 3_600_000
SESSIONS = 30


@pytest.fixture(scope="module")
def model(sequence_bundle: Path) -> LoadedModel:
    return load_model(sequence_bundle, "compiled")


@pytest.fixture(scope="module")
def frame(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(workdir / "data" / "impressions.csv")


def session_pages(frame: pd.DataFrame, n: int) -> list[list[np.ndarray]]:
    """n sessions of at least three page views: each a list of its pages' frame rows, in order."""
    pages = page_views(frame)
    rows_of_page = pd.Series(np.arange(len(frame))).groupby(pages.row_page).apply(np.asarray)
    lengths = np.bincount(pages.session)
    chosen = np.flatnonzero(lengths >= 3)[:n]
    out = []
    for s in chosen.tolist():
        in_order = np.flatnonzero(pages.session == s)  # PageViews: session by session, in order
        out.append([rows_of_page[p] for p in in_order.tolist()])
    return out


def view(session: str, n: int, product: str) -> Event:
    return Event(f"{session}-v{n}", session, EventType.VIEW, T0_MS + 1000 * n, product)


def served_context(store: SessionStore, session: str, row: pd.Series) -> SessionContext:
    """The store's context (product on screen, previous products, history) with the row's
    engagement fields, which the events here do not carry."""
    state = store.get(session)
    assert state is not None
    context = state.to_context()
    previous = [row[f"prev_product_{k}"] for k in (1, 2, 3) if row[f"prev_product_{k}"] != "NONE"]
    assert list(context.previous_product_ids) == previous
    assert context.current_product_id == row["current_product_id"]
    return replace(
        context,
        products_in_cart=int(row["products_in_cart"]),
        device_type=row["device_type"],
        traffic_source=row["traffic_source"],
        time_on_page_sec=float(row["time_on_page_sec"]),
        scroll_depth=float(row["scroll_depth"]),
        clicked_product_image=bool(row["clicked_product_image"]),
        session_length_mins=float(row["session_length_mins"]),
        products_viewed_count=int(row["products_viewed_count"]),
    )


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    yield RedisStore(redis_server.url)


def test_tracked_sessions_give_the_training_rows_bit_for_bit(
    model: LoadedModel, frame: pd.DataFrame, store: SessionStore
) -> None:
    """Training-serving skew 0 on the sequence set: every page of 30 sessions, its views
    tracked one by one, gives exactly the rows training built for it (in the serving slot)."""
    assert model.feature_set == "sequence" and model.scoring_path == "native"
    assert model.feature_names == FEATURE_SETS["sequence"]
    trained = features_from_frame(
        frame.assign(slot=0), model.encodings, model.catalog, model.tables, "sequence"
    )
    history_columns = slice(len(FEATURE_SETS["candidate"]), None)
    compared = longest = 0
    for s, pages in enumerate(session_pages(frame, SESSIONS)):
        session = f"seq-{s}"
        for n, rows in enumerate(pages):
            first = frame.iloc[rows[0]]
            store.track(view(session, n, first["current_product_id"]))
            context = served_context(store, session, first)
            ids = frame["rec_product_id"].iloc[rows].astype(str).tolist()
            resolved = resolve_candidates(model, Candidates(ids), skip_unknown=False)
            served = model.rows(context, resolved.inputs(model))
            np.testing.assert_array_equal(served, trained[rows], err_msg=f"{session} page {n}")
            built_in_c = native_rows(model, context, resolved.index)  # the request kernel's
            assert built_in_c.tobytes() == trained[rows].tobytes(), f"{session} page {n}"
            assert np.isfinite(served[:, history_columns]).all()
            compared += len(rows)
        longest = max(longest, len(pages))
    assert compared > 100 and longest >= 4
    assert len(SEQUENCE_FEATURES) == trained.shape[1] - len(FEATURE_SETS["candidate"])


def test_a_server_scores_a_sequence_bundle_from_sessions_tracked_in_redis(
    sequence_bundle: Path, model: LoadedModel, frame: pd.DataFrame, logs: Path,
    redis_server: RedisServer,
) -> None:  # fmt: skip
    """TrackEvent into Redis, then Score with only the session id and Recommend: the server's
    scores are the compiled model's on the rows the in-process store's context builds."""
    reference = MemoryStore()
    backend = load_backend(sequence_bundle, "compiled")
    with running(sequence_bundle, "--session-store", redis_server.url, log_dir=logs) as server:
        assert "native scoring path" in server.log()
        stub = pb_grpc.RecommenderStub(server.channel())
        info = stub.GetModelInfo(pb.GetModelInfoRequest()).models[0]
        assert list(info.feature_names) == list(FEATURE_SETS["sequence"])
        for s, pages in enumerate(session_pages(frame, 8)):
            session = f"grpc-seq-{s}"
            for n, rows in enumerate(pages):
                event = view(session, n, frame["current_product_id"].iloc[rows[0]])
                reference.track(event)
                message = pb.Event(event_id=event.event_id, session_id=session,
                                   type=pb.EventType.EVENT_TYPE_VIEW, product_id=event.product_id)  # fmt: skip
                message.client_timestamp.FromMilliseconds(event.timestamp_ms)
                stub.TrackEvent(pb.TrackEventRequest(event=message))
            ids = frame["rec_product_id"].iloc[pages[-1]].astype(str).tolist()
            response = stub.Score(
                pb.ScoreRequest(
                    context=pb.SessionContext(session_id=session),
                    candidates=[pb.Candidate(product_id=i) for i in ids],
                )
            )
            state = reference.get(session)
            assert state is not None
            resolved = resolve_candidates(model, Candidates(ids), skip_unknown=False)
            expected = backend.predict(model.rows(state.to_context(), resolved.inputs(model)))
            np.testing.assert_array_equal(np.array(response.scores), expected)
            recommended = stub.Recommend(pb.RecommendRequest(session_id=session, k=5))
            assert not recommended.cold_start and recommended.model_version == info.version
