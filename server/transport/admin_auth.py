"""Bearer-token check for the admin listener: every call must carry the configured token."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

UNAUTHENTICATED_MESSAGE = "admin calls need the admin token (authorization: Bearer <token>)"


class TokenCheck:
    """Compares the call's `authorization` metadata with "Bearer <token>" in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def allows(self, metadata: tuple[Any, ...] | None) -> bool:
        """Whether the call's metadata carries the token (exactly one authorization entry)."""
        values = [value for key, value in metadata or () if key == "authorization"]
        if len(values) != 1:
            return False
        given = values[0].encode() if isinstance(values[0], str) else bytes(values[0])
        return hmac.compare_digest(given, self._expected)


def _refusal_like(handler: grpc.RpcMethodHandler, deny: Callable[..., Any]) -> Any:
    """A handler of the same streaming shape as `handler` that only runs `deny`."""
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without the token with UNAUTHENTICATED."""

    def __init__(self, check: TokenCheck) -> None:
        self.check = check

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or self.check.allows(handler_call_details.invocation_metadata):
            return handler
        log.warning("refused %s: no valid admin token", handler_call_details.method)

        async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

        return _refusal_like(handler, deny)
