"""Domain errors of the serving core; the transport maps each class to one status code."""

from __future__ import annotations

import math


class RecoError(Exception):
    """Base class of every error the core raises on purpose."""


class InvalidArgument(RecoError):
    """A request field is malformed; the message names the field path and the bad value."""

    def __init__(self, field: str, value: object, requirement: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field} {requirement}, got {_show(value)}")


class LimitExceeded(RecoError):
    """A request is larger than a configured limit (e.g. too many candidates)."""

    def __init__(self, field: str, size: int, limit: int, unit: str) -> None:
        self.field = field
        self.limit = limit
        super().__init__(f"{field} has {size} {unit}, above the limit of {limit}")


class NotFound(RecoError):
    """A referenced entity (a product id) does not exist."""


class Unavailable(RecoError):
    """The server cannot serve right now (no model loaded, shutting down, store down)."""


class Overloaded(RecoError):
    """The in-flight request limit is reached; the client should back off and retry."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"server is at its limit of {limit} requests in flight; retry later")


class DeadlineExceeded(RecoError):
    """The caller's deadline passed; the remaining work was abandoned."""


def _show(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, str):
        return repr(value)
    return str(value)
