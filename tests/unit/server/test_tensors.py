"""Open Inference Protocol conversion: tensors and parameters to the core's ScoreQuery, scores
back to an FP32 output; every refusal names the field."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from reco.inference_v2 import grpc_predict_v2_pb2 as v2
from server.core.errors import InvalidArgument
from server.transport.tensors import context_from_parameters, infer_query, infer_response


def ids_raw(ids: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(i.encode())) + i.encode() for i in ids)


def test_raw_features_are_passed_through_as_bytes() -> None:
    rows = np.arange(6, dtype="<f4").reshape(2, 3)
    request = v2.ModelInferRequest(model_name="reco")
    request.inputs.add(name="features", datatype="FP32", shape=[2, 3])
    request.raw_input_contents.append(rows.tobytes())
    query = infer_query(request)
    assert query.raw_output and query.rows == 2
    features = query.score.features
    assert features is not None and features.data == rows.tobytes()
    assert (features.rows, features.cols) == (2, 3)


def test_typed_ids_and_context_parameters() -> None:
    request = v2.ModelInferRequest(model_name="reco")
    request.inputs.add(name="product_id", datatype="BYTES", shape=[2, 1]).contents.bytes_contents.extend([b"P1", b"P2"])  # fmt: skip
    request.parameters["current_product_id"].string_param = "P0"
    request.parameters["current_price"].string_param = "12.5"
    request.parameters["products_in_cart"].int64_param = 2
    request.parameters["previous_product_ids"].string_param = "P7,P8"
    request.parameters["clicked_product_image"].bool_param = True
    request.parameters["skip_unknown"].bool_param = True
    request.parameters["priority"].int64_param = 1  # Triton's: accepted, unused
    query = infer_query(request)
    assert not query.raw_output and query.score.features is None
    score = query.score
    assert score.candidates.product_ids == ["P1", "P2"] and score.skip_unknown
    assert score.candidates.id_path(1) == "product_id[1]"
    context = score.context
    assert (context.current_product_id, context.current_price) == ("P0", 12.5)
    assert context.products_in_cart == 2 and context.previous_product_ids == ("P7", "P8")
    assert context.clicked_product_image is True


def test_raw_bytes_elements_must_be_length_prefixed() -> None:
    request = v2.ModelInferRequest(model_name="reco")
    request.inputs.add(name="product_id", datatype="BYTES", shape=[2])
    request.raw_input_contents.append(ids_raw(["P1", "P2"]))
    assert infer_query(request).score.candidates.product_ids == ["P1", "P2"]
    request.raw_input_contents[0] = ids_raw(["P1", "P2"])[:-1]
    with pytest.raises(InvalidArgument, match=r"^raw_input_contents\[0\] must be BYTES elements"):
        infer_query(request)
    request.raw_input_contents[0] = ids_raw(["P1"])
    with pytest.raises(InvalidArgument, match=r"must hold 2 elements for shape \[2\]"):
        infer_query(request)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("products_in_cart", v2.InferParameter(string_param="1.5"), "must be a whole number"),
        ("current_price", v2.InferParameter(bool_param=True), "got 'bool_param True'"),
        ("session_id", v2.InferParameter(int64_param=3), "must be a string_param"),
        ("nope", v2.InferParameter(string_param="x"), "must be one of session_id"),
    ],
)
def test_bad_parameters_name_themselves(name: str, value: v2.InferParameter, expected: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        context_from_parameters({name: value})
    assert str(caught.value).startswith(f"parameters[{name!r}]")
    assert expected in str(caught.value)


def test_ids_must_label_every_feature_row() -> None:
    request = v2.ModelInferRequest(model_name="reco")
    request.inputs.add(name="features", datatype="FP32", shape=[2, 1]).contents.fp32_contents.extend([1, 2])  # fmt: skip
    request.inputs.add(name="product_id", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"P")  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"inputs\[1\].shape must label each of the 2"):
        infer_query(request)


def test_scores_answer_in_the_request_style() -> None:
    request = v2.ModelInferRequest(model_name="reco", id="r1")
    scores = np.array([0.25, np.nan, 0.75])
    raw = infer_response(request, scores, "reco", "v1", {"backend": "compiled"}, raw_output=True)
    assert raw.id == "r1" and list(raw.outputs[0].shape) == [3]
    got = np.frombuffer(raw.raw_output_contents[0], dtype="<f4")
    assert got[0] == 0.25 and np.isnan(got[1]) and got[2] == 0.75
    typed = infer_response(request, scores, "reco", "v1", {}, raw_output=False)
    assert not typed.raw_output_contents
    assert list(typed.outputs[0].contents.fp32_contents)[::2] == [0.25, 0.75]
