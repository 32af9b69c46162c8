"""Open Inference Protocol (KServe V2) messages to core requests and scores back to tensors."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from reco import SessionContext
from reco.inference_v2 import grpc_predict_v2_pb2 as v2
from server.core.errors import InvalidArgument
from server.core.requests import Candidates, FeatureRows, ScoreQuery

FEATURES = "features"  # FP32 [N, F]: rows in the bundle's feature order, NaN = missing
PRODUCT_ID = "product_id"  # BYTES [N]: candidates scored from the catalog and the context
PROBABILITY = "probability"  # FP32 [N]: the click probability of each row, in request order
INPUTS = {FEATURES: "FP32", PRODUCT_ID: "BYTES"}

_BYTES_LENGTH = struct.Struct("<I")  # each BYTES element: uint32 little-endian length, bytes


def _text(name: str, value: v2.InferParameter) -> str:
    if value.WhichOneof("parameter_choice") != "string_param":
        raise InvalidArgument(f"parameters[{name!r}]", _shown(value), "must be a string_param")
    return value.string_param


def _number(name: str, value: v2.InferParameter) -> float:
    """int64_param, or string_param holding a number (the proto has no float parameter)."""
    kind = value.WhichOneof("parameter_choice")
    if kind == "int64_param":
        return float(value.int64_param)
    if kind == "string_param":
        try:
            number = float(value.string_param)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    requirement = "must be an int64_param or a string_param holding a finite number"
    raise InvalidArgument(f"parameters[{name!r}]", _shown(value), requirement)


def _whole(name: str, value: v2.InferParameter) -> int:
    number = _number(name, value)
    if not number.is_integer():
        raise InvalidArgument(f"parameters[{name!r}]", number, "must be a whole number")
    return int(number)


def _flag(name: str, value: v2.InferParameter) -> bool:
    if value.WhichOneof("parameter_choice") != "bool_param":
        raise InvalidArgument(f"parameters[{name!r}]", _shown(value), "must be a bool_param")
    return value.bool_param


def _ids(name: str, value: v2.InferParameter) -> tuple[str, ...]:
    text = _text(name, value)
    return tuple(text.split(",")) if text else ()


# Request parameters that describe the shopper's session (reco.SessionContext's fields); a
# request holding only session_id is completed from the tracked session.
CONTEXT_PARAMETERS: dict[str, Callable[[str, v2.InferParameter], Any]] = {
    "session_id": _text,
    "customer_id": _text,
    "current_product_id": _text,
    "current_category": _text,
    "current_price": _number,
    "previous_product_ids": _ids,  # comma-separated, most recent first
    "products_in_cart": _whole,
    "device_type": _text,
    "traffic_source": _text,
    "time_on_page_sec": _number,
    "scroll_depth": _number,
    "clicked_product_image": _flag,
    "session_length_mins": _number,
    "products_viewed_count": _whole,
}
# Parameters V2 clients send on their own (Triton's scheduling hints): accepted, not used.
IGNORED_PARAMETERS = frozenset({"priority", "timeout", "binary_data_output"})
SKIP_UNKNOWN = "skip_unknown"  # bool: unknown product ids score NaN instead of NOT_FOUND


@dataclass(frozen=True)
class InferQuery:
    """A ModelInfer request as the core's ScoreQuery, and how to answer it."""

    score: ScoreQuery
    rows: int
    raw_output: bool  # answer with raw_output_contents, as the request sent raw inputs


def _shown(value: v2.InferParameter) -> str:
    kind = value.WhichOneof("parameter_choice")
    return "unset" if kind is None else f"{kind} {getattr(value, kind)!r}"


def context_from_parameters(
    parameters: Mapping[str, v2.InferParameter],
) -> tuple[SessionContext, bool]:
    """The session context (and skip_unknown) from the request's parameters."""
    fields: dict[str, Any] = {}
    skip_unknown = False
    for name in sorted(parameters):
        value = parameters[name]
        if name in CONTEXT_PARAMETERS:
            fields[name] = CONTEXT_PARAMETERS[name](name, value)
        elif name == SKIP_UNKNOWN:
            skip_unknown = _flag(name, value)
        elif name not in IGNORED_PARAMETERS:
            allowed = ", ".join([*CONTEXT_PARAMETERS, SKIP_UNKNOWN])
            raise InvalidArgument(f"parameters[{name!r}]", name, f"must be one of {allowed}")
    return SessionContext(**fields), skip_unknown


def _elements(path: str, shape: list[int]) -> int:
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"{path}.shape", shape, "must not hold negative dimensions")
    return math.prod(shape)


def _features(path: str, tensor: Any, raw: bytes | None) -> FeatureRows:
    shape = list(tensor.shape)
    if tensor.datatype != INPUTS[FEATURES]:
        raise InvalidArgument(f"{path}.datatype", tensor.datatype, "must be FP32")
    if len(shape) != 2:
        raise InvalidArgument(f"{path}.shape", shape, "must be [N, F] (rows, features)")
    count = _elements(path, shape)
    if raw is None:
        values = tensor.contents.fp32_contents
        if len(values) != count:
            raise InvalidArgument(
                f"{path}.contents.fp32_contents",
                f"{len(values)} values",
                f"must hold N x F = {count} values for shape {shape}",
            )
        data = np.asarray(values, dtype="<f4").tobytes()
    else:
        if len(raw) != count * 4:
            raise InvalidArgument(
                path.replace("inputs", "raw_input_contents"),
                f"{len(raw)} bytes",
                f"must hold N x F float32 = {count * 4} bytes for shape {shape}",
            )
        data = raw
    return FeatureRows(data=data, rows=shape[0], cols=shape[1])


def _product_ids(path: str, tensor: Any, raw: bytes | None) -> list[str]:
    shape = list(tensor.shape)
    if tensor.datatype != INPUTS[PRODUCT_ID]:
        raise InvalidArgument(f"{path}.datatype", tensor.datatype, "must be BYTES")
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidArgument(f"{path}.shape", shape, "must be [N] (or [N, 1])")
    count = _elements(path, shape)
    items = list(tensor.contents.bytes_contents) if raw is None else _split_bytes(path, raw)
    if len(items) != count:
        raise InvalidArgument(
            f"{path}.contents" if raw is None else path.replace("inputs", "raw_input_contents"),
            f"{len(items)} elements",
            f"must hold {count} elements for shape {shape}",
        )
    try:
        return [item.decode() for item in items]
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path}.contents", "bytes", "must be UTF-8 product ids") from None


def _split_bytes(path: str, raw: bytes) -> list[bytes]:
    """Raw BYTES contents: each element a uint32 little-endian length, then its bytes."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            break
        (length,) = _BYTES_LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            offset = -1
            break
        items.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise InvalidArgument(
            path.replace("inputs", "raw_input_contents"),
            f"{len(raw)} bytes",
            "must be BYTES elements, each a 4-byte little-endian length and that many bytes",
        )
    return items


def _has_typed_contents(tensor: Any) -> bool:
    return tensor.HasField("contents") and tensor.contents.ByteSize() > 0


def infer_query(request: v2.ModelInferRequest) -> InferQuery:
    """The ScoreQuery for a ModelInfer request: a `features` input (FP32 [N, F]), a
    `product_id` input (BYTES [N]) scored in the context the parameters give, or both (the
    ids then label the rows); typed contents or raw_input_contents, never a mix."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            "raw_input_contents",
            f"{len(raw)} entries",
            f"must hold one entry per input ({len(request.inputs)})",
        )
    found: dict[str, tuple[str, Any, bytes | None]] = {}
    for i, tensor in enumerate(request.inputs):
        path = f"inputs[{i}]"
        if tensor.name not in INPUTS:
            raise InvalidArgument(
                f"{path}.name", tensor.name, f"must be {FEATURES!r} or {PRODUCT_ID!r}"
            )
        if tensor.name in found:
            raise InvalidArgument(f"{path}.name", tensor.name, "must not repeat an input")
        if raw and _has_typed_contents(tensor):
            raise InvalidArgument(
                f"{path}.contents", "set", "must be empty when raw_input_contents is used"
            )
        found[tensor.name] = (path, tensor, raw[i] if raw else None)
    if not found:
        raise InvalidArgument(
            "inputs", 0, f"must hold {FEATURES!r} (FP32 [N, F]) and/or {PRODUCT_ID!r} (BYTES [N])"
        )
    for i, output in enumerate(request.outputs):
        if output.name != PROBABILITY:
            raise InvalidArgument(f"outputs[{i}].name", output.name, f"must be {PROBABILITY!r}")
    context, skip_unknown = context_from_parameters(request.parameters)
    features = _features(*found[FEATURES]) if FEATURES in found else None
    ids = _product_ids(*found[PRODUCT_ID]) if PRODUCT_ID in found else []
    if features is not None and ids and len(ids) != features.rows:
        raise InvalidArgument(
            f"{found[PRODUCT_ID][0]}.shape",
            len(ids),
            f"must label each of the {features.rows} feature rows",
        )
    query = ScoreQuery(
        context=context,
        candidates=Candidates(ids, field=PRODUCT_ID),
        features=features,
        skip_unknown=skip_unknown,
    )
    rows = features.rows if features is not None else len(ids)
    return InferQuery(query, rows, raw_output=bool(raw))


def infer_response(
    request: v2.ModelInferRequest,
    scores: npt.NDArray[np.float64],
    model_name: str,
    model_version: str,
    parameters: Mapping[str, str],
    raw_output: bool,
) -> v2.ModelInferResponse:
    """The probabilities as one FP32 [N] output, raw when the request was raw."""
    response = v2.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id
    )
    for key, value in parameters.items():
        response.parameters[key].string_param = value
    output = response.outputs.add(name=PROBABILITY, datatype="FP32", shape=[len(scores)])
    values = scores.astype("<f4")
    if raw_output:
        response.raw_output_contents.append(values.tobytes())
    else:
        output.contents.fp32_contents.extend(values.tolist())
    return response
