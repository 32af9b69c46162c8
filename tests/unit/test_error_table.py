"""The error table: every core error maps to its status; unexpected errors stay generic."""

from __future__ import annotations

import logging

import grpc
import pytest

from server.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    Overloaded,
    Unavailable,
)
from server.transport.status import INTERNAL_MESSAGE, status_for


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
        (Overloaded(64), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit of 64"),
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
