"""The error table: every core error maps to its status, messages stay short, unexpected errors
stay generic."""

from __future__ import annotations

import logging

import grpc
import pytest

from server.core.errors import (
    ECHO_CHARS,
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
    MalformedRequest,
    NotFound,
    Overloaded,
    Unavailable,
    echo,
)
from server.transport.status import (
    INTERNAL_MESSAGE,
    MAX_MESSAGE_CHARS,
    STATUS_BY_ERROR,
    StreamStopped,
    status_for,
)


@pytest.mark.parametrize(
    ("error", "code", "fragment"),
    [
        (InvalidArgument("context.scroll_depth", 1.5, "must be between 0 and 1"),
         grpc.StatusCode.INVALID_ARGUMENT, "context.scroll_depth must be between 0 and 1, got 1.5"),
        (InvalidArgument("candidates[2].price", float("nan"), "must be > 0"),
         grpc.StatusCode.INVALID_ARGUMENT, "candidates[2].price must be > 0, got NaN"),
        (LimitExceeded("candidates", 5000, 1000, "candidates"),
         grpc.StatusCode.INVALID_ARGUMENT, "above the limit of 1000"),
        (NotFound("candidates[0].product_id 'X' is not in the catalog"),
         grpc.StatusCode.NOT_FOUND, "'X'"),
        (Unavailable("no model is loaded yet"), grpc.StatusCode.UNAVAILABLE, "no model"),
        (Overloaded(64), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit of 64 requests in flight"),
        (Overloaded(8, "open streams"), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit of 8 open streams"),
        (MalformedRequest(), grpc.StatusCode.INVALID_ARGUMENT, "malformed request"),
        (DeadlineExceeded("abandoned"), grpc.StatusCode.DEADLINE_EXCEEDED, "abandoned"),
    ],
)  # fmt: skip
def test_core_errors_map_to_their_status(
    error: Exception, code: grpc.StatusCode, fragment: str
) -> None:
    got_code, message = status_for(error, "Score")
    assert got_code == code
    assert fragment in message


def test_unexpected_errors_are_internal_generic_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        code, message = status_for(KeyError("secret detail"), "Score")
    assert code == grpc.StatusCode.INTERNAL
    assert message == INTERNAL_MESSAGE and "secret" not in message
    assert "secret detail" in caplog.text


def test_every_core_error_class_is_in_the_table() -> None:
    from server.core import errors

    classes = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.RecoError)
        and cls is not errors.RecoError
    }
    assert classes == set(STATUS_BY_ERROR)


def test_echoed_values_are_cut_with_their_length() -> None:
    huge = "x" * 1_000_000
    shown = echo(huge)
    assert shown == f"{'x' * ECHO_CHARS!r}... (1000000 characters)"
    assert echo("short") == "'short'" and echo(float("nan")) == "NaN" and echo(1.5) == "1.5"
    assert len(echo(list(range(100_000)))) < 2 * ECHO_CHARS
    code, message = status_for(InvalidArgument("context.session_id", huge, "is too long"), "Score")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(message) < 200
    assert message.startswith("context.session_id is too long, got 'xxx")


def test_a_1_mb_unknown_id_gives_a_short_not_found() -> None:
    # The scorer builds its NOT_FOUND message with echo(); the table caps anything else.
    code, message = status_for(NotFound(f"candidates[0].product_id {echo('P' * 2**20)}"), "Score")
    assert code == grpc.StatusCode.NOT_FOUND and len(message) < 200
    code, message = status_for(Unavailable("store said: " + "y" * 50_000), "TrackEvent")
    assert code == grpc.StatusCode.UNAVAILABLE and len(message) <= MAX_MESSAGE_CHARS


def test_a_stopped_stream_keeps_its_cause_status_and_says_where() -> None:
    stopped = StreamStopped(MalformedRequest(), before="request 3: ")
    assert status_for(stopped, "ScoreStream") == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "request 3: malformed request",
    )
    outage = StreamStopped(Unavailable("store down"), after="; 5 stored, resend from events[7]")
    assert status_for(outage, "StreamEvents") == (
        grpc.StatusCode.UNAVAILABLE,
        "store down; 5 stored, resend from events[7]",
    )
    code, message = status_for(StreamStopped(KeyError("secret"), after="; 2 stored"), "x")
    assert code == grpc.StatusCode.INTERNAL and message == f"{INTERNAL_MESSAGE}; 2 stored"
    assert "secret" not in message
