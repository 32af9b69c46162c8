"""Every call's boundary, for every service of the server: request decoding, load shedding,
admission, the error table and call metrics, in one interceptor that no exit path skips."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import grpc

from server.core.errors import DeadlineExceeded, MalformedRequest, RecoError
from server.metrics import Metrics
from server.transport.admission import Admission, Kind
from server.transport.shedding import QueueMonitor
from server.transport.status import StreamStopped, status_for

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]
Behavior = Callable[..., Any]


class Malformed:
    """Stands for a request message whose bytes did not decode (see MALFORMED)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MALFORMED"


# What a guarded deserializer returns for undecodable bytes: the call (or, in a stream, that
# message) is answered INVALID_ARGUMENT "malformed request" instead of grpc's UNKNOWN and a
# traceback in the log.
MALFORMED = Malformed()


def decoded(message: Any) -> Any:
    """The message itself, or MalformedRequest raised for MALFORMED (stream handlers call it
    on each message they read)."""
    if message is MALFORMED:
        raise MalformedRequest()
    return message


@dataclass(frozen=True)
class Route:
    """How the guard treats one method."""

    rpc: str  # the method's short name, as the metrics label it
    # A method of a guarded service: shed while calls queue past --max-queue-ms, holding a slot
    # of `kind` while it runs, its handler dealing with MALFORMED stream messages itself.
    guarded: bool
    kind: Kind
    measured: bool  # counted in reco_requests_total
    request_streaming: bool


class Ticket:
    """One call accepted by Python: notices when its task ends without its handler starting."""

    __slots__ = ("guard", "refusal", "settled", "started")

    def __init__(self, guard: CallGuard) -> None:
        self.guard = guard
        self.started = False  # the guarded behaviour began
        self.settled = False  # answered by the guard itself (refused, or an unknown method)
        self.refusal: RecoError | None = None

    def ended(self, _task: object) -> None:
        self.guard.monitor.finished += 1
        if not (self.started or self.settled):
            self.guard.cancelled_at_dispatch.inc()


_TICKET: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("ticket", default=None)


class CallGuard(grpc.aio.ServerInterceptor):
    """Wraps the method handler of every call.

    - the request deserializer never raises: undecodable bytes become MALFORMED (counted in
      reco_malformed_requests_total), answered INVALID_ARGUMENT "malformed request";
    - calls of `guarded_services` that queued in gRPC's core past --max-queue-ms are refused
      RESOURCE_EXHAUSTED before their message is even read (QueueMonitor);
    - they hold an admission slot (unary, or stream for streaming methods) for their whole run;
    - any exception a handler raises becomes a status through the one error table;
    - calls of `measured_services` are counted by status code, unary ones timed.
    """

    def __init__(
        self,
        admission: Admission,
        monitor: QueueMonitor,
        metrics: Metrics,
        guarded_services: Collection[str],
        measured_services: Collection[str],
    ) -> None:
        self.admission = admission
        self.monitor = monitor
        self.metrics = metrics
        self.guarded_services = frozenset(guarded_services)
        self.measured_services = frozenset(measured_services)
        self.cancelled_at_dispatch = metrics.cancelled.labels("dispatch")
        self._cancelled_in_handler = metrics.cancelled.labels("handler")
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._refusers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(  # type: ignore[override]  # None = unknown method, as grpc does
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """Runs in the call's own task as soon as Python accepts it."""
        ticket = Ticket(self)
        self.monitor.accepted += 1
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(ticket.ended)
        _TICKET.set(ticket)
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            inner = await continuation(handler_call_details)
            if inner is None:  # an unknown method: grpc answers UNIMPLEMENTED
                ticket.settled = True
                return None
            handler = self._handlers[method] = self._wrap(method, inner)
        refuser = self._refusers.get(method)
        if refuser is not None and (refusal := self.monitor.refusal()) is not None:
            ticket.settled = True
            ticket.refusal = refusal
            return refuser
        return handler

    def route(self, method: str, handler: grpc.RpcMethodHandler) -> Route:
        """How calls of `method` ("/package.Service/Method") are treated."""
        service, _, rpc = method.lstrip("/").rpartition("/")
        streaming = handler.request_streaming or handler.response_streaming
        return Route(
            rpc=rpc,
            # A whole service, or one method of it ("package.Service/Method").
            guarded=service in self.guarded_services or f"{service}/{rpc}" in self.guarded_services,
            kind=Kind.STREAM if streaming else Kind.UNARY,
            measured=service in self.measured_services,
            request_streaming=handler.request_streaming,
        )

    # -- wrapping -------------------------------------------------------------------------

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        route = self.route(method, handler)
        behavior_name = _behavior_field(handler)
        behavior = getattr(handler, behavior_name)
        if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
            log.error("%s has a synchronous handler; it runs unguarded", route.rpc)
            return handler
        if route.guarded:
            self._refusers[method] = self._refuser(route)
        return _HANDLER_FACTORIES[behavior_name](
            self._guarded(route, behavior, handler.response_streaming),
            request_deserializer=self._deserializer(route, handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _deserializer(
        self, route: Route, deserialize: Callable[[bytes], Any] | None
    ) -> Callable[[bytes], Any] | None:
        if deserialize is None:
            return None
        malformed = self.metrics.malformed.labels(route.rpc)

        def parse(data: bytes) -> Any:
            try:
                return deserialize(data)
            except Exception:  # DecodeError, or any parser failure on hostile bytes
                malformed.inc()
                return MALFORMED

        return parse

    def _guarded(self, route: Route, behavior: Behavior, streaming: bool) -> Behavior:
        """The behaviour every call of `route` runs: inputs checked, a slot held, errors
        answered through the table, the call recorded."""
        run = _writing_responses(behavior) if streaming else behavior

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = self._begin()
            code = grpc.StatusCode.OK
            try:
                request = self._inputs(route, request, context)
                with self._slot(route):
                    return await run(request, context)
            except BaseException as error:
                code, message = self._settle(route, error, context)
                if message is None:
                    raise
                await answer(context, code, message)
                return None
            finally:
                self._end(route, code, start, timed=not streaming)

        return call

    def _refuser(self, route: Route) -> grpc.RpcMethodHandler:
        """A handler answering the refusal the interceptor just decided; it is request-
        streaming so that grpc does not even read the request before it runs."""

        async def refuse(_requests: object, context: grpc.aio.ServicerContext) -> None:
            ticket = _TICKET.get()
            error = ticket.refusal if ticket is not None else None
            if error is None:  # cannot happen: the interceptor set it for this very call
                error = RecoError("refused")
            if route.measured:
                self.metrics.observe_call(route.rpc, grpc.StatusCode.RESOURCE_EXHAUSTED.name)
            await answer(context, *status_for(error, route.rpc))

        return grpc.stream_unary_rpc_method_handler(refuse)

    # -- the parts every guarded call shares ---------------------------------------------

    def _begin(self) -> float:
        ticket = _TICKET.get()
        if ticket is not None:
            ticket.started = True
        return time.perf_counter()

    def _slot(self, route: Route) -> contextlib.AbstractContextManager[None]:
        """The admission slot a call holds for its whole run (none for unguarded services)."""
        if not route.guarded:
            return contextlib.nullcontext()
        return self.admission.budget(route.kind).slot()

    def _inputs(self, route: Route, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """The request (unary) or the request iterator (streams), checked for MALFORMED, once
        the call is known to be still wanted."""
        if _expired(context):  # it waited past its deadline before its handler could run
            self.cancelled_at_dispatch.inc()
            raise DeadlineExceeded("deadline exceeded before the call was handled")
        if route.request_streaming:
            return request if route.guarded else _raising_on_malformed(request)
        return decoded(request)

    def _settle(
        self, route: Route, error: BaseException, context: grpc.aio.ServicerContext
    ) -> tuple[grpc.StatusCode, str | None]:
        """The status of a call whose handler raised, and the message to abort with (None when
        the call is already over: cancelled, or aborted by the handler itself)."""
        if isinstance(error, asyncio.CancelledError):
            self._cancelled_in_handler.inc()
            return grpc.StatusCode.CANCELLED, None
        if isinstance(error, grpc.aio.AbortError):
            return context.code() or grpc.StatusCode.UNKNOWN, None
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit
            return grpc.StatusCode.UNKNOWN, None
        return status_for(error, route.rpc)

    def _end(self, route: Route, code: grpc.StatusCode, start: float, timed: bool = True) -> None:
        if route.measured:
            seconds = time.perf_counter() - start if timed else None
            self.metrics.observe_call(route.rpc, code.name, seconds)


_HANDLER_FACTORIES: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _behavior_field(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "stream_stream" if handler.response_streaming else "stream_unary"
    return "unary_stream" if handler.response_streaming else "unary_unary"


def _writing_responses(behavior: Behavior) -> Behavior:
    """A response-streaming behaviour as a coroutine that writes each response itself, never an
    async generator: grpc would drive a generator from its own frame, and a cancellation landing
    there while the generator waits at a yield would leave the guard's frame (and the slot it
    holds) to the garbage collector."""
    if not inspect.isasyncgenfunction(behavior):
        return behavior  # already writes through context.write

    async def write_all(request: Any, context: grpc.aio.ServicerContext) -> None:
        async with contextlib.aclosing(behavior(request, context)) as responses:
            async for response in responses:
                await context.write(response)

    return write_all


async def answer(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    """Ends the call with this status (raising grpc's AbortError). When the client has already
    gone the status cannot be sent: that is no error, and returning lets grpc end the call
    quietly instead of logging a traceback."""
    try:
        await context.abort(code, message)
    except grpc.aio.InternalError:  # ExecuteBatchError: the call is closed on the client side
        return


def _expired(context: grpc.aio.ServicerContext) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


async def _raising_on_malformed(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A request stream for handlers that know nothing of MALFORMED: the first undecodable
    message ends the call with INVALID_ARGUMENT naming its position."""
    index = 0
    async for message in requests:
        if message is MALFORMED:
            raise StreamStopped(MalformedRequest(), before=f"request {index}: ")
        yield message
        index += 1
