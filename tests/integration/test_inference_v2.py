"""The Open Inference Protocol (KServe V2) on the public port: the real tritonclient in its own
virtualenv (raw and typed inputs), grpcurl through reflection, and our own stubs for errors;
every probability equals the one Score gives for the same rows."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from reco import FEATURE_NAMES, Catalog
from reco.inference_v2 import grpc_predict_v2_pb2 as v2
from reco.inference_v2 import grpc_predict_v2_pb2_grpc as v2_grpc
from reco.inference_v2 import metadata_parameters_pb2 as v2_extra
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.client_venvs import client_venv
from tests.integration.servers import ROOT, ServerProcess

TRITONCLIENT = ("tritonclient[grpc]==2.73.0",)
GRPCURL = Path(sys.executable).with_name("grpcurl")
MODEL = "reco"
CONTEXT = {"current_product_id": 0, "device_type": "Mobile", "traffic_source": "Search"}


def feature_rows(bundle: Path, n: int = 40) -> np.ndarray:
    """Training rows of the bundle, with missing values (NaN) in a few of them."""
    rows = np.load(bundle / "train_sample.npy")[:n].copy()
    rows[0, :5] = np.nan
    rows[-1, -3:] = np.nan
    return rows


def score_rows(server: ServerProcess, rows: np.ndarray) -> np.ndarray:
    """What reco.v1 Score gives for these feature rows."""
    request = pb.ScoreRequest(
        features=pb.FeatureMatrix(data=rows.astype("<f4").tobytes(), rows=len(rows),
                                  cols=rows.shape[1]),
    )  # fmt: skip
    with server.channel() as channel:
        return np.asarray(pb_grpc.RecommenderStub(channel).Score(request, timeout=10).scores)


def score_ids(server: ServerProcess, ids: list[str], context: dict[str, str]) -> np.ndarray:
    request = pb.ScoreRequest(context=pb.SessionContext(**context), candidate_ids=ids)
    with server.channel() as channel:
        return np.asarray(pb_grpc.RecommenderStub(channel).Score(request, timeout=10).scores)


def as_float32(values: np.ndarray) -> list[float]:
    return np.asarray(values, dtype=np.float32).astype(float).tolist()


def test_tritonclient_raw_and_typed_inputs_score_as_score_does(
    server: ServerProcess, bundle: Path
) -> None:
    python = client_venv("tritonclient", TRITONCLIENT, "RECO_REQUIRE_TRITONCLIENT")
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    context = {**CONTEXT, "current_product_id": ids[0]}
    rows = feature_rows(bundle)
    job = {"target": server.target, "model": MODEL, "rows": rows.tolist(),
           "product_ids": ids[1:30], "parameters": context}  # fmt: skip
    done = subprocess.run(
        [str(python), str(ROOT / "tests" / "integration" / "triton_client.py")],
        input=json.dumps(job), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["server"]["name"] == "reco-scoring-server"
    meta = got["metadata"]
    assert meta["name"] == MODEL and meta["versions"] == [bundle.name]
    assert meta["inputs"] == [["features", "FP32", [-1, len(FEATURE_NAMES)]],
                              ["product_id", "BYTES", [-1]]]  # fmt: skip
    assert meta["outputs"] == [["probability", "FP32", [-1]]]
    assert got["model_version"] == bundle.name

    by_rows = as_float32(score_rows(server, rows))
    # NaN != NaN: compare through JSON-safe text; every row here has a finite score.
    assert all(math.isfinite(v) for v in by_rows)
    assert got["raw_features"] == by_rows
    assert got["typed_features"] == by_rows
    by_ids = as_float32(score_ids(server, ids[1:30], context))
    assert got["raw_ids"] == by_ids
    assert got["typed_ids"] == by_ids

    errors = got["errors"]
    assert errors["wrong_width"].startswith("INVALID_ARGUMENT: features.cols"), errors
    assert errors["unknown_model"].startswith("NOT_FOUND: model_name 'no-such-model'"), errors
    assert errors["unknown_version"].startswith("NOT_FOUND: model 'reco' has no version"), errors
    assert errors["unknown_product"].startswith("NOT_FOUND: product_id[0] 'NO-SUCH-PRODUCT'")


def test_grpcurl_finds_the_service_by_reflection_and_infers(
    server: ServerProcess, bundle: Path
) -> None:
    listed = subprocess.run([str(GRPCURL), "-plaintext", server.target, "list"],
                            capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert "inference.GRPCInferenceService" in listed.stdout.split()
    sample = np.load(bundle / "train_sample.npy")
    rows = sample[np.isfinite(sample).all(axis=1)][:2]  # JSON has no NaN
    body = {"modelName": MODEL, "inputs": [{"name": "features", "datatype": "FP32",
            "shape": list(rows.shape), "contents": {"fp32Contents": rows.ravel().tolist()}}]}  # fmt: skip
    done = subprocess.run(
        [str(GRPCURL), "-plaintext", "-d", json.dumps(body), server.target,
         "inference.GRPCInferenceService/ModelInfer"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    assert answer["outputs"][0]["name"] == "probability"
    # grpcurl prints each float32 in its shortest form, which reads back to the same float32.
    got = as_float32(np.asarray(answer["outputs"][0]["contents"]["fp32_contents"]))
    assert got == as_float32(score_rows(server, rows))


def infer(server: ServerProcess, request: v2.ModelInferRequest) -> v2.ModelInferResponse:
    with server.channel() as channel:
        return v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)


def features_request(rows: np.ndarray, raw: bool = True) -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(model_name=MODEL, id="req-1")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=list(rows.shape))
    if raw:
        request.raw_input_contents.append(rows.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    return request


def test_raw_requests_get_raw_outputs_and_ids_label_rows(
    server: ServerProcess, bundle: Path
) -> None:
    rows = feature_rows(bundle, 5)
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()[:5]
    request = features_request(rows)
    ids_tensor = request.inputs.add(name="product_id", datatype="BYTES", shape=[5])
    request.raw_input_contents.append(b"".join(struct.pack("<I", len(i)) + i.encode()
                                               for i in ids))  # fmt: skip
    response = infer(server, request)
    assert response.id == "req-1" and not response.outputs[0].contents.fp32_contents
    assert ids_tensor.name == "product_id"
    got = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    assert got.tolist() == as_float32(score_rows(server, rows))
    assert response.parameters["backend"].string_param == "compiled"


def test_model_metadata_carries_the_feature_order_as_parameters(server: ServerProcess) -> None:
    with server.channel() as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        meta = stub.ModelMetadata(v2.ModelMetadataRequest(name=MODEL), timeout=10)
        assert stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready
        assert not stub.ModelReady(v2.ModelReadyRequest(name=MODEL, version="x"), timeout=10).ready
    # The official message has no parameters; MLServer's field 6 travels as an unknown field.
    extra = v2_extra.ModelMetadataParameters.FromString(meta.SerializeToString())
    assert extra.parameters["feature_names"].string_param.split(",") == list(FEATURE_NAMES)
    assert "session_id" in extra.parameters["context_parameters"].string_param


def rejected(server: ServerProcess, request: v2.ModelInferRequest) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        infer(server, request)
    return caught.value.code().name, caught.value.details() or ""


def test_bad_tensors_are_invalid_argument_naming_the_field(
    server: ServerProcess, bundle: Path
) -> None:
    rows = feature_rows(bundle, 2)
    n = len(FEATURE_NAMES)
    fp64 = features_request(rows)
    fp64.inputs[0].datatype = "FP64"
    short = features_request(rows)
    short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
    mixed = features_request(rows)
    mixed.inputs[0].contents.fp32_contents.append(1.0)
    typed_short = features_request(rows, raw=False)
    del typed_short.inputs[0].contents.fp32_contents[-1]
    unknown_param = features_request(rows)
    unknown_param.parameters["colour"].string_param = "red"
    bad_number = features_request(rows)
    bad_number.parameters["current_price"].string_param = "NaN"
    too_many = features_request(np.zeros((1001, n), dtype=np.float32))
    other_output = features_request(rows)
    other_output.outputs.add(name="logits")
    cases = {
        "inputs[0].datatype must be FP32, got 'FP64'": fp64,
        "raw_input_contents[0] must hold N x F float32": short,
        "inputs[0].contents must be empty when raw_input_contents is used": mixed,
        f"inputs[0].contents.fp32_contents must hold N x F = {2 * n} values": typed_short,
        "parameters['colour'] must be one of session_id": unknown_param,
        "parameters['current_price'] must be an int64_param or a string_param": bad_number,
        "features has 1001 rows, above the limit of 1000": too_many,
        "outputs[0].name must be 'probability', got 'logits'": other_output,
        "inputs must hold 'features'": v2.ModelInferRequest(model_name=MODEL),
    }
    for expected, request in cases.items():
        code, details = rejected(server, request)
        assert (code, details[: len(expected)]) == ("INVALID_ARGUMENT", expected), details


def test_undecodable_bytes_are_invalid_argument(server: ServerProcess) -> None:
    with server.channel() as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "malformed request"
