"""Hostile inputs for every method the server answers: random bytes, and messages of the
method's request type filled with extreme values (huge ids, NaN/inf, negative and maximal
numbers, long repeated fields, timestamps outside protobuf's range).

The fuzz tests assert on them; `python -m tests.integration.fuzz_cases --target HOST:PORT`
sends the same deterministic set to any server and tallies the status codes it answers.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reco.inference_v2 import grpc_predict_v2_pb2 as v2
from reco.v1 import recommender_pb2 as pb

# Answers that mean "the server did not handle this": what fuzzing must never produce.
FORBIDDEN = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
TIMEOUT_S = 5.0
WATCH_TIMEOUT_S = 0.3  # Health.Watch never ends on its own
FD = descriptor.FieldDescriptor

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
EXTREME_TEXT = st.sampled_from(
    ["", "PROD0001", "\x00", "é" * 40, "../../etc/passwd", "%s%n", "P" * 100_000]
)
EXTREME_FLOATS = st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 3.4e38])


@dataclass(frozen=True)
class Method:
    """One method of the server: its path, request type and shape."""

    path: str
    request: type[Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def name(self) -> str:
        """Service/Method, as tallies show it."""
        return self.path.lstrip("/").rsplit(".", 1)[-1]


def _methods(service: descriptor.ServiceDescriptor, module: Any) -> list[Method]:
    return [
        Method(
            f"/{service.full_name}/{m.name}",
            getattr(module, m.input_type.name),
            m.client_streaming,
            m.server_streaming,
        )
        for m in service.methods
    ]


METHODS: list[Method] = [
    *_methods(pb.DESCRIPTOR.services_by_name["Recommender"], pb),
    *_methods(pb.DESCRIPTOR.services_by_name["Admin"], pb),
    *_methods(health_pb2.DESCRIPTOR.services_by_name["Health"], health_pb2),
    *_methods(reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"], reflection_pb2),
    *_methods(v2.DESCRIPTOR.services_by_name["GRPCInferenceService"], v2),
]


_SMALL = st.integers(-5, 300)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_STRING: st.one_of(st.text(max_size=12), EXTREME_TEXT),
    FD.TYPE_BYTES: st.one_of(st.binary(max_size=64), st.just(b"\x00" * 200_000)),
    FD.TYPE_FLOAT: st.one_of(st.floats(width=32), EXTREME_FLOATS),
    FD.TYPE_DOUBLE: st.one_of(st.floats(), EXTREME_FLOATS),
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_INT64: st.one_of(_SMALL, st.sampled_from(INT64)),
    FD.TYPE_SINT64: st.one_of(_SMALL, st.sampled_from(INT64)),
    FD.TYPE_SFIXED64: st.one_of(_SMALL, st.sampled_from(INT64)),
    FD.TYPE_UINT64: st.one_of(st.integers(0, 300), st.just(2**64 - 1)),
    FD.TYPE_FIXED64: st.one_of(st.integers(0, 300), st.just(2**64 - 1)),
    FD.TYPE_UINT32: st.one_of(st.integers(0, 300), st.just(2**32 - 1)),
    FD.TYPE_FIXED32: st.one_of(st.integers(0, 300), st.just(2**32 - 1)),
}
# int32-like fields and enums (proto3 keeps unknown enum numbers)
_INT32_LIKE = st.one_of(_SMALL, st.sampled_from(INT32))


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    return _SCALARS.get(field.type, _INT32_LIKE)


def _short(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_STRING:
        return st.text(max_size=12)
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=12)
    return _scalar(field)


@st.composite
def _message(draw: st.DrawFn, cls: type[Message], depth: int) -> Message:
    message = cls()
    for field in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        is_message = field.type == FD.TYPE_MESSAGE
        if field.is_repeated:
            if is_message and field.message_type.GetOptions().map_entry:
                continue  # maps appear only in responses
            many = st.integers(0, 3) if depth else st.sampled_from([0, 1, 3, 1500])
            count = draw(many)
            if is_message:
                if depth >= 2:
                    continue
                target = getattr(message, field.name)
                element = _message(_message_class(field), depth + 1)
                for item in draw(st.lists(element, min_size=count, max_size=count)):
                    target.add().CopyFrom(item)
            else:
                # a long list of short values, or a few extreme ones: never megabytes of them
                value = draw(_scalar(field) if count <= 3 else _short(field))
                getattr(message, field.name).extend([value] * count)
        elif is_message:
            if depth < 2:
                getattr(message, field.name).CopyFrom(
                    draw(_message(_message_class(field), depth + 1))
                )
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


def _message_class(field: descriptor.FieldDescriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(field.message_type)


def payloads(method: Method) -> st.SearchStrategy[list[bytes]]:
    """What one call sends: 1 message (up to 4 on a request stream), each either random bytes
    or an extreme message of the method's request type."""
    one = st.one_of(
        st.binary(max_size=200),
        _message(method.request, 0).map(lambda m: m.SerializeToString()),
    )
    return st.lists(one, min_size=1, max_size=4 if method.client_streaming else 1)


def call(channel: grpc.Channel, method: Method, messages: list[bytes]) -> grpc.StatusCode:
    """Sends the raw messages and returns the status the server ended the call with."""
    timeout = WATCH_TIMEOUT_S if method.path.endswith("/Watch") else TIMEOUT_S
    kinds: dict[tuple[bool, bool], Callable[..., Any]] = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }
    multicallable = kinds[(method.client_streaming, method.server_streaming)](
        method.path, request_serializer=None, response_deserializer=None
    )
    request: Any = iter(messages) if method.client_streaming else messages[0]
    try:
        result = multicallable(request, timeout=timeout)
        if method.server_streaming:
            for _ in result:
                pass
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def tally(target: str, examples: int) -> dict[str, Counter[str]]:
    """Status codes per method for `examples` deterministic payloads of every method."""
    codes: dict[str, Counter[str]] = {}
    with grpc.insecure_channel(target) as channel:
        for method in METHODS:
            codes[method.name] = _tally_method(channel, method, examples)
    return codes


def _tally_method(channel: grpc.Channel, method: Method, examples: int) -> Counter[str]:
    seen: Counter[str] = Counter()

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(payloads(method))
    def send(messages: list[bytes]) -> None:
        seen[call(channel, method, messages).name] += 1

    send()
    return seen


def main(argv: list[str] | None = None) -> int:
    """Prints a Markdown table of status codes per method."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--examples", type=int, default=40, help="payloads per method")
    args = parser.parse_args(argv)
    codes = tally(args.target, args.examples)
    names = sorted({code for counter in codes.values() for code in counter})
    print("| method | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for method, counter in codes.items():
        print(f"| {method} | " + " | ".join(str(counter.get(n, 0)) for n in names) + " |")
    forbidden = sum(c[n.name] for c in codes.values() for n in FORBIDDEN)
    total = sum(sum(c.values()) for c in codes.values())
    print(f"\n{forbidden} of {total} calls answered INTERNAL or UNKNOWN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
