"""Runs inside the tritonclient virtualenv (tests/integration/client_venvs.py), never in ours:
calls the server through the real tritonclient over the wire and prints what it got as JSON.

Input on stdin: {"target", "model", "rows": [[...], ...], "product_ids": [...],
"parameters": {...}}. Output: the server's metadata and readiness, and the probabilities of
raw and typed requests, plus the status codes of requests that must fail.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException


def _code(exc: InferenceServerException) -> str:
    return str(exc.status()).removeprefix("StatusCode.")


def _typed_features(stub: Any, model: str, rows: np.ndarray) -> list[float]:
    """FP32 contents (not raw bytes), built with tritonclient's own generated messages."""
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="features", datatype="FP32", shape=list(rows.shape))
    tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    response = stub.ModelInfer(request, timeout=10)
    assert not response.raw_output_contents, "a typed request got raw outputs"
    return list(response.outputs[0].contents.fp32_contents)


def _typed_ids(stub: Any, model: str, ids: list[str], params: dict[str, Any]) -> list[float]:
    request = service_pb2.ModelInferRequest(model_name=model)
    for key, value in params.items():
        if isinstance(value, str):
            request.parameters[key].string_param = value
        else:
            request.parameters[key].int64_param = value
    tensor = request.inputs.add(name="product_id", datatype="BYTES", shape=[len(ids)])
    tensor.contents.bytes_contents.extend(i.encode() for i in ids)
    response = stub.ModelInfer(request, timeout=10)
    return list(response.outputs[0].contents.fp32_contents)


def main() -> None:
    job = json.load(sys.stdin)
    model = job["model"]
    rows = np.asarray(job["rows"], dtype=np.float32)
    ids = job["product_ids"]
    client = triton.InferenceServerClient(job["target"])
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
    }
    server = client.get_server_metadata()
    out["server"] = {"name": server.name, "version": server.version}
    meta = client.get_model_metadata(model)
    out["metadata"] = {
        "name": meta.name,
        "versions": list(meta.versions),
        "inputs": [[t.name, t.datatype, list(t.shape)] for t in meta.inputs],
        "outputs": [[t.name, t.datatype, list(t.shape)] for t in meta.outputs],
    }

    # Raw contents: what InferInput.set_data_from_numpy sends.
    features = triton.InferInput("features", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows)
    result = client.infer(model, [features], outputs=[triton.InferRequestedOutput("probability")])
    out["raw_features"] = result.as_numpy("probability").astype(float).tolist()
    out["model_version"] = result.get_response().model_version

    product = triton.InferInput("product_id", [len(ids)], "BYTES")
    product.set_data_from_numpy(np.array([i.encode() for i in ids], dtype=np.object_))
    result = client.infer(model, [product], parameters=job["parameters"])
    out["raw_ids"] = result.as_numpy("probability").astype(float).tolist()

    channel = triton.grpc.insecure_channel(job["target"])
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    out["typed_features"] = _typed_features(stub, model, rows)
    out["typed_ids"] = _typed_ids(stub, model, ids, job["parameters"])

    errors: dict[str, str] = {}
    wrong = triton.InferInput("features", [len(rows), rows.shape[1] - 1], "FP32")
    wrong.set_data_from_numpy(rows[:, :-1].copy())
    for name, call in {
        "wrong_width": lambda: client.infer(model, [wrong]),
        "unknown_model": lambda: client.infer("no-such-model", [features]),
        "unknown_version": lambda: client.get_model_metadata(model, model_version="nope"),
        "unknown_product": lambda: client.infer(
            model, [_bytes_input(["NO-SUCH-PRODUCT"])], parameters=job["parameters"]
        ),
    }.items():
        try:
            call()
            errors[name] = "OK"
        except InferenceServerException as exc:
            errors[name] = f"{_code(exc)}: {exc.message()}"
    out["errors"] = errors
    json.dump(out, sys.stdout)


def _bytes_input(ids: list[str]) -> Any:
    tensor = triton.InferInput("product_id", [len(ids)], "BYTES")
    tensor.set_data_from_numpy(np.array([i.encode() for i in ids], dtype=np.object_))
    return tensor


if __name__ == "__main__":
    main()
