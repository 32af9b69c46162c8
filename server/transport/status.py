"""The error table: each core exception class maps to one gRPC status code."""

from __future__ import annotations

import logging

import grpc

from server.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    Overloaded,
    RecoError,
    Unavailable,
)
from server.core.sessions import SessionFull

log = logging.getLogger(__name__)

# DESIGN.md "Errors": the message of each of these names the field, value, limit or reason.
STATUS_BY_ERROR: dict[type[RecoError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    LimitExceeded: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    SessionFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}

INTERNAL_MESSAGE = "internal error; the details are in the server log"


def status_for(error: BaseException, rpc: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message a failed call returns. Unexpected errors are logged with
    their traceback and answered with a generic INTERNAL message."""
    for cls in type(error).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code, str(error)
    log.error("unexpected error in %s", rpc, exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
