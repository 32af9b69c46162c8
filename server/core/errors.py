"""Domain errors of the serving core; the transport maps each class to one status code."""

from __future__ import annotations

import math

# Longest part of a client's value echoed in an error message: a status travels in an HTTP/2
# trailer that clients cap (8 KiB by default), so a 1 MB id must not come back whole.
ECHO_CHARS = 64


class RecoError(Exception):
    """Base class of every error the core raises on purpose."""


class InvalidArgument(RecoError):
    """A request field is malformed; the message names the field path and the bad value."""

    def __init__(self, field: str, value: object, requirement: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field} {requirement}, got {echo(value)}")


class MalformedRequest(RecoError):
    """The request bytes are not a valid protobuf message of the method's request type."""

    def __init__(self) -> None:
        super().__init__("malformed request")


class LimitExceeded(RecoError):
    """A request is larger than a configured limit (e.g. too many candidates)."""

    def __init__(self, field: str, size: int, limit: int, unit: str) -> None:
        self.field = field
        self.limit = limit
        super().__init__(f"{field} has {size} {unit}, above the limit of {limit}")


class NotFound(RecoError):
    """A referenced entity (a product id) does not exist; the message shows it with echo()."""


class Unavailable(RecoError):
    """The server cannot serve right now (no model loaded, shutting down, store down)."""


class Overloaded(RecoError):
    """The server is at one of its load limits; the client should back off and retry."""

    def __init__(self, limit: int, unit: str = "requests in flight") -> None:
        self.limit = limit
        super().__init__(f"server is at its limit of {limit} {unit}; retry later")


class DeadlineExceeded(RecoError):
    """The caller's deadline passed; the remaining work was abandoned."""


class SessionFull(RecoError):
    """A session reached its event or byte cap; its further events are refused."""

    def __init__(self, session_id: str, held: int, limit: int, unit: str, setting: str) -> None:
        self.limit = limit
        super().__init__(
            f"session {echo(session_id)} holds {held} {unit}, the limit of {limit} ({setting}); "
            "it accepts no more events until it expires or is forgotten"
        )


def echo(value: object) -> str:
    """A client's value as an error message shows it: strings quoted, NaN spelled out, and
    anything longer than ECHO_CHARS cut there, with its full length said."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, str):
        if len(value) > ECHO_CHARS:
            return f"{value[:ECHO_CHARS]!r}... ({len(value)} characters)"
        return repr(value)
    text = str(value)
    if len(text) > ECHO_CHARS:
        return f"{text[:ECHO_CHARS]}... ({len(text)} characters)"
    return text
