"""Score, ScoreStream and GetModelInfo against a real server: parity, semantics, every error row."""

from __future__ import annotations

import math
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from reco import FEATURE_NAMES, Catalog, SessionContext, load_backend
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.model import load_model
from server.core.requests import Candidates
from server.core.scoring import context_features, resolve_candidates
from tests.integration.servers import ServerProcess, running

CONTEXT = pb.SessionContext(
    session_id="it-1", customer_id="c1", current_product_id="PROD0001",
    previous_product_ids=["PROD0002", "PROD0003"], products_in_cart=1, device_type="Desktop",
    traffic_source="Direct", time_on_page_sec=95, scroll_depth=0.8, clicked_product_image=True,
    session_length_mins=12.5, products_viewed_count=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> pb_grpc.RecommenderStub:
    return pb_grpc.RecommenderStub(server.channel())


@pytest.fixture(scope="module")
def product_ids(bundle: Path) -> list[str]:
    return Catalog.load(bundle / "catalog.csv").product_ids.tolist()


def score_request(ids: list[str], **kw: object) -> pb.ScoreRequest:
    return pb.ScoreRequest(
        context=CONTEXT, candidates=[pb.Candidate(product_id=p) for p in ids], **kw
    )  # type: ignore[arg-type]


def offline_scores(bundle: Path, ids: list[str]) -> np.ndarray:
    """What the compiled library says for the same rows, computed outside the server."""
    model = load_model(bundle, "compiled")
    context = SessionContext(
        session_id="it-1", customer_id="c1", current_product_id="PROD0001",
        previous_product_ids=("PROD0002", "PROD0003"), products_in_cart=1, device_type="Desktop",
        traffic_source="Direct", time_on_page_sec=95.0, scroll_depth=np.float32(0.8).item(),
        clicked_product_image=True, session_length_mins=12.5, products_viewed_count=4,
    )  # fmt: skip
    resolved = resolve_candidates(model, Candidates(ids), skip_unknown=False)
    rows = context_features(model, context, resolved.inputs(model))
    return load_backend(bundle, kind="compiled").predict(rows)


def test_scores_equal_the_compiled_library_offline(stub: pb_grpc.RecommenderStub, bundle: Path,
                                                    product_ids: list[str]) -> None:  # fmt: skip
    ids = product_ids[:100]
    response = stub.Score(score_request(ids, top_k=5))
    assert response.backend == "compiled"
    assert len(response.scores) == 100
    np.testing.assert_allclose(
        np.array(response.scores), offline_scores(bundle, ids), rtol=0, atol=1e-6
    )
    assert response.server_time_us > 0 and response.model_version


def test_ranking_top_k_and_min_score(stub: pb_grpc.RecommenderStub, product_ids: list[str]) -> None:
    ids = product_ids[:60]
    everything = stub.Score(score_request(ids, min_score=0.0))
    scores = np.array(everything.scores)
    assert [r.index for r in everything.ranked] == np.argsort(-scores, kind="stable").tolist()
    assert [r.rank for r in everything.ranked] == list(range(1, 61))
    assert all(
        r.product_id == ids[r.index] and r.score == scores[r.index] for r in everything.ranked
    )
    cut = stub.Score(score_request(ids, min_score=0.0, top_k=3))
    assert [r.index for r in cut.ranked] == [r.index for r in everything.ranked[:3]]
    threshold = float(np.median(scores))
    filtered = stub.Score(score_request(ids, min_score=threshold))
    assert all(r.score >= np.float32(threshold) for r in filtered.ranked)
    assert len(filtered.ranked) == int((scores >= np.float32(threshold)).sum())
    default = stub.Score(score_request(ids))  # unset = the bundle's 0.7
    assert all(r.score >= 0.7 for r in default.ranked)
    assert len(default.ranked) == int((scores >= 0.7).sum())


def test_id_only_candidates_equal_explicit_catalog_values(stub: pb_grpc.RecommenderStub, bundle: Path,
                                                          product_ids: list[str]) -> None:  # fmt: skip
    catalog = Catalog.load(bundle / "catalog.csv")
    ids = product_ids[:20]
    explicit = pb.ScoreRequest(context=CONTEXT, min_score=0.0)
    for pid in ids:
        i = catalog.index[pid]
        explicit.candidates.add(
            product_id=pid, category=str(catalog.categories[i]), price=float(catalog.prices[i])
        )
    assert list(stub.Score(explicit).scores) == list(stub.Score(score_request(ids)).scores)


def test_unknown_product_with_category_and_price_is_scored(stub: pb_grpc.RecommenderStub) -> None:
    request = pb.ScoreRequest(context=CONTEXT, min_score=0.0)
    request.candidates.add(product_id="NEW-1", category="Sports", price=49.0)
    response = stub.Score(request)
    assert 0.0 <= response.scores[0] <= 1.0


def test_skip_unknown_scores_the_rest(
    stub: pb_grpc.RecommenderStub, product_ids: list[str]
) -> None:
    response = stub.Score(score_request(["NOPE", product_ids[0]], skip_unknown=True, min_score=0.0))
    assert math.isnan(response.scores[0]) and not math.isnan(response.scores[1])
    assert list(response.unknown_product_ids) == ["NOPE"]
    assert [r.index for r in response.ranked] == [1]


def test_feature_matrix_path_matches_candidate_path(stub: pb_grpc.RecommenderStub, bundle: Path,
                                                    product_ids: list[str]) -> None:  # fmt: skip
    ids = product_ids[:10]
    model = load_model(bundle, "lightgbm")
    resolved = resolve_candidates(model, Candidates(ids), skip_unknown=False)
    rows = context_features(
        model, SessionContext(current_product_id="PROD0001"), resolved.inputs(model)
    )
    matrix = pb.FeatureMatrix(data=rows.astype("<f4").tobytes(), rows=10, cols=len(FEATURE_NAMES))
    by_rows = stub.Score(pb.ScoreRequest(features=matrix, min_score=0.0))
    by_ids = stub.Score(pb.ScoreRequest(context=pb.SessionContext(current_product_id="PROD0001"),
                                        candidates=[pb.Candidate(product_id=p) for p in ids], min_score=0.0))  # fmt: skip
    np.testing.assert_allclose(by_rows.scores, by_ids.scores, rtol=0, atol=1e-12)
    assert all(r.product_id == "" for r in by_rows.ranked)


def test_score_stream_answers_each_request_in_order(
    stub: pb_grpc.RecommenderStub, product_ids: list[str]
) -> None:
    requests = [score_request(product_ids[i : i + 5], min_score=0.0) for i in range(0, 50, 5)]
    responses = list(stub.ScoreStream(iter(requests)))
    singles = [stub.Score(r) for r in requests]
    assert [list(r.scores) for r in responses] == [list(r.scores) for r in singles]


def test_score_stream_error_names_the_request(
    stub: pb_grpc.RecommenderStub, product_ids: list[str]
) -> None:
    bad = pb.ScoreRequest(candidates=[pb.Candidate(product_id=product_ids[0], price=-1.0)])
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ScoreStream(iter([score_request(product_ids[:2]), bad])))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("request 1: candidates[0].price")


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r.candidates.add(product_id="PROD0001", price=float("nan")), "candidates[2].price must be a finite number > 0, got NaN"),
        (lambda r: r.candidates.add(product_id="PROD0001", price=-5), "candidates[2].price must be a finite number > 0, got -5.0"),
        (lambda r: r.candidates.add(product_id=""), "candidates[2].product_id must not be empty"),
        (lambda r: setattr(r.context, "scroll_depth", 1.5), "context.scroll_depth must be between 0 and 1, got 1.5"),
        (lambda r: setattr(r.context, "current_price", -1), "context.current_price must be a finite number > 0, got -1.0"),
        (lambda r: setattr(r, "top_k", -2), "top_k must be >= 0"),
    ],
)  # fmt: skip
def test_malformed_fields_are_invalid_argument_naming_field_and_value(
    stub: pb_grpc.RecommenderStub, product_ids: list[str], mutate: object, fragment: str
) -> None:
    request = score_request(product_ids[:2])
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.value.details()


def test_too_many_candidates_names_the_limit(
    stub: pb_grpc.RecommenderStub, product_ids: list[str]
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(score_request((product_ids * 10)[:1001]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1001 candidates, above the limit of 1000" in err.value.details()


def test_oversized_message_is_resource_exhausted(stub: pb_grpc.RecommenderStub) -> None:
    huge = pb.ScoreRequest(
        features=pb.FeatureMatrix(data=b"\0" * (5 * 1024 * 1024), rows=1, cols=27)
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(huge)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4194304" in err.value.details()  # the limit is named


def test_unknown_product_is_not_found(
    stub: pb_grpc.RecommenderStub, product_ids: list[str]
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(score_request([product_ids[0], "PROD9999"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "candidates[1].product_id 'PROD9999' is not in the catalog" in err.value.details()


def test_model_info_describes_the_bundle(stub: pb_grpc.RecommenderStub, bundle: Path) -> None:
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    (model,) = info.models
    assert model.backend == "compiled" and model.default_threshold == pytest.approx(0.7)
    assert list(model.feature_names) == list(FEATURE_NAMES)
    assert {"model.txt", "model.so", "catalog.csv"} <= set(model.file_sha256)
    assert model.bundle_path == bundle.name  # relative to the bundle root, never absolute


def test_reflection_serves_a_json_call_without_proto_files(
    server: ServerProcess, product_ids: list[str]
) -> None:
    """What `grpcurl -plaintext -d '{...}' host:port reco.v1.Recommender/Score` does: descriptors
    from the reflection service, messages built from them, JSON in and out (no generated stubs)."""
    from google.protobuf import descriptor_pool, json_format, message_factory

    with server.channel() as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert {"reco.v1.Recommender", "grpc.health.v1.Health"} <= set(services)
        assert "reco.v1.Admin" not in services  # served only on the admin listener
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("reco.v1.Recommender")
        assert {"Score", "ScoreStream", "Recommend", "TrackEvent"} <= {
            m.name for m in service.methods
        }
        method = service.methods_by_name["Score"]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        body = {
            "context": {"currentProductId": product_ids[0]},
            "candidateIds": product_ids[:3],
            "topK": 2,
        }
        call = channel.unary_unary(
            "/reco.v1.Recommender/Score",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        reply = json_format.MessageToDict(call(json_format.ParseDict(body, request_class())))
    assert len(reply["scores"]) == 3 and reply["backend"] == "compiled"
    assert "serverTimeUs" in reply and reply["modelVersion"]


def test_metrics_endpoint_exposes_requests_stages_and_model(server: ServerProcess,
                                                            stub: pb_grpc.RecommenderStub,
                                                            product_ids: list[str]) -> None:  # fmt: skip
    stub.Score(score_request(product_ids[:7]))
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    assert 'reco_requests_total{code="OK",rpc="Score"}' in text
    for stage in ("decode", "features", "predict", "rank", "encode"):
        assert f'reco_stage_seconds_count{{rpc="Score",stage="{stage}"}}' in text
    assert 'reco_candidates_per_request_bucket{le="10.0",rpc="Score"}' in text
    assert 'reco_model_info{backend="compiled"' in text


def test_expired_deadlines_are_abandoned(bundle: Path, logs: Path, product_ids: list[str]) -> None:
    with running(bundle, log_dir=logs) as srv:
        stub = pb_grpc.RecommenderStub(srv.channel())
        request = score_request((product_ids * 5)[:1000], min_score=0.0)
        # 100 requests of about 1 ms each at once, each allowed 3 ms: most wait past their
        # deadline before the event loop reaches them.
        futures = [stub.Score.future(request, timeout=0.003) for _ in range(100)]
        codes = [f.exception().code() if f.exception() else grpc.StatusCode.OK for f in futures]
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
    assert grpc.StatusCode.DEADLINE_EXCEEDED in codes
    # Expired calls are abandoned (by grpc before dispatch, by the guard before the handler,
    # or by the scorer before the model call), so the model scored fewer batches than sent.
    predicted = [
        line
        for line in metrics.splitlines()
        if line.startswith('reco_stage_seconds_count{rpc="Score",stage="predict"}')
    ]
    assert predicted
    scored = float(predicted[0].split()[-1])
    assert scored < 100, f"all {scored:.0f} expired requests were still scored"


def test_no_model_yet_is_unavailable_and_health_moves_to_serving(bundle: Path, logs: Path,
                                                                  product_ids: list[str]) -> None:  # fmt: skip
    from grpc_health.v1 import health_pb2

    from tests.integration.servers import wait_for_health

    # A long warm-up keeps the server NOT_SERVING for a while after it starts listening.
    with ServerProcess(bundle, "--warmup-requests", "200000", log_dir=logs) as srv:
        wait_for_health(srv.target, want=health_pb2.HealthCheckResponse.NOT_SERVING)
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.RecommenderStub(srv.channel()).Score(score_request(product_ids[:3]))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no model is loaded yet" in err.value.details()
        srv.wait_serving(timeout=300)


def test_sigterm_flips_health_finishes_in_flight_and_exits_cleanly(bundle: Path, logs: Path,
                                                                   product_ids: list[str]) -> None:  # fmt: skip
    # No shedding by queueing time: this burst of 50 is about shutdown, not overload.
    srv = ServerProcess(
        bundle, "--grace-seconds", "10", "--max-queue-ms", "0", log_dir=logs
    ).wait_serving()
    stub = pb_grpc.RecommenderStub(srv.channel())
    request = score_request((product_ids * 5)[:1000], min_score=0.0)
    in_flight = [stub.Score.future(request) for _ in range(50)]
    code = srv.stop()
    finished = [f.exception() for f in in_flight]
    log = srv.log()
    assert code == 0, log
    assert "health NOT_SERVING" in log and "stopped" in log
    # Calls already accepted complete; later ones are refused as UNAVAILABLE, never dropped silently.
    refused = [(e.code(), e.details()) for e in finished if e is not None]
    assert all(code == grpc.StatusCode.UNAVAILABLE for code, _ in refused), (
        len(refused),
        refused[:2],
        log[-3000:],
    )
    assert any(e is None for e in finished)


def test_unexpected_errors_are_internal_with_a_generic_message(
    bundle: Path, product_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    from server.transport.status import INTERNAL_MESSAGE
    from tests.integration.servers import InProcessServer

    def broken_scorer(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire at /srv/secret/path")

    with InProcessServer(bundle) as srv, srv.channel() as channel:
        srv.app.handlers.scorer.score = broken_scorer  # type: ignore[method-assign]
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.RecommenderStub(channel).Score(score_request(product_ids[:2]))
        # The server survives and keeps answering.
        pb_grpc.RecommenderStub(channel).GetModelInfo(pb.GetModelInfoRequest())
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == INTERNAL_MESSAGE
    assert "disk on fire" in caplog.text  # the details went to the log


def test_candidate_ids_scores_like_candidates(
    stub: pb_grpc.RecommenderStub, product_ids: list[str]
) -> None:
    ids = product_ids[:50]
    packed = stub.Score(pb.ScoreRequest(context=CONTEXT, candidate_ids=ids, top_k=5, min_score=0.0))
    assert list(packed.scores) == list(
        stub.Score(score_request(ids, top_k=5, min_score=0.0)).scores
    )
    assert [r.product_id for r in packed.ranked] == [ids[r.index] for r in packed.ranked]
