from reco.inference_v2 import grpc_predict_v2_pb2 as _grpc_predict_v2_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelMetadataParameters(_message.Message):
    __slots__ = ("parameters",)
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _grpc_predict_v2_pb2.InferParameter
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_grpc_predict_v2_pb2.InferParameter, _Mapping]] = ...) -> None: ...
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.MessageMap[str, _grpc_predict_v2_pb2.InferParameter]
    def __init__(self, parameters: _Optional[_Mapping[str, _grpc_predict_v2_pb2.InferParameter]] = ...) -> None: ...
