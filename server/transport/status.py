"""The error table: each core exception class maps to one gRPC status code."""

from __future__ import annotations

import logging

import grpc

from server.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LimitExceeded,
    MalformedRequest,
    NotFound,
    Overloaded,
    RecoError,
    SessionFull,
    Unavailable,
)

log = logging.getLogger(__name__)

# docs/architecture.md "Errors": the message of each of these names the field, value, limit or
# reason.
STATUS_BY_ERROR: dict[type[RecoError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    MalformedRequest: grpc.StatusCode.INVALID_ARGUMENT,
    LimitExceeded: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    SessionFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}

INTERNAL_MESSAGE = "internal error; the details are in the server log"
# A status message travels in an HTTP/2 trailer, which clients cap (8 KiB by default); values
# are already cut by echo(), and this bounds whatever else a message holds.
MAX_MESSAGE_CHARS = 1024


class StreamStopped(Exception):
    """A stream ended by the error of one of its messages: the status of `cause`, its message
    with `before` and `after` around it (which message it was, what was done before it)."""

    def __init__(self, cause: BaseException, before: str = "", after: str = "") -> None:
        super().__init__(f"{before}{cause}{after}")
        self.cause = cause
        self.before = before
        self.after = after


def status_for(error: BaseException, rpc: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message a failed call returns. Unexpected errors are logged with
    their traceback and answered with a generic INTERNAL message."""
    if isinstance(error, StreamStopped):
        code, message = status_for(error.cause, rpc)
        return code, _capped(f"{error.before}{message}{error.after}")
    for cls in type(error).__mro__:
        mapped = STATUS_BY_ERROR.get(cls)
        if mapped is not None:
            return mapped, _capped(str(error))
    log.error("unexpected error in %s", rpc, exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def _capped(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[: MAX_MESSAGE_CHARS - 40]}... (message cut at {MAX_MESSAGE_CHARS} characters)"
