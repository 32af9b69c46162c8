"""Recommender and Admin servicers on grpc.aio: thin over Handlers (the call guard does
decoding, admission, statuses and call metrics for every method)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.transport.guard import decoded
from server.transport.handlers import Handlers, deadline_of
from server.transport.status import StreamStopped

Handler = Callable[[Any, float | None], Any]


async def run_handler(
    blocking: ThreadPoolExecutor | None,
    handler: Handler,
    request: Any,
    context: grpc.aio.ServicerContext,
    uses_store: bool = False,
) -> Any:
    """Runs a handler inline on the event loop, or on `blocking` threads when it waits on a
    remote session store."""
    if uses_store and blocking is not None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(blocking, handler, request, deadline_of(context))
    return handler(request, deadline_of(context))


class RecommenderServicer(pb_grpc.RecommenderServicer):
    """Handlers take microseconds, so they run inline on the event loop (no thread hop per
    call); handlers that wait on a remote session store run on `blocking` threads instead, so
    a Redis round trip never stalls the loop."""

    def __init__(self, handlers: Handlers, blocking: ThreadPoolExecutor | None) -> None:
        self.handlers = handlers
        self.blocking = blocking

    async def _run(self, handler: Handler, request: Any, context: grpc.aio.ServicerContext,
                   uses_store: bool = False) -> Any:  # fmt: skip
        return await run_handler(self.blocking, handler, request, context, uses_store)

    async def Score(
        self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreResponse:
        # Only a context holding nothing but a session id reads the store.
        uses_store = request.context.session_id != "" and not request.context.current_product_id
        return await self._run(self.handlers.score, request, context, uses_store)

    async def ScoreStream(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScoreResponse]:
        # A bad message ends the stream (responses are positional: skipping one would shift
        # every later answer), with a status naming the message's index.
        index = 0
        async for message in request_iterator:
            start = time.perf_counter()
            try:
                response = self.handlers.score_stream(decoded(message), deadline_of(context))
            except Exception as exc:
                raise StreamStopped(exc, before=f"request {index}: ") from exc
            self.handlers.metrics.observe_latency("ScoreStream", time.perf_counter() - start)
            yield response
            index += 1

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return await self._run(self.handlers.model_info, request, context)

    async def TrackEvent(
        self, request: pb.TrackEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.TrackEventResponse:
        return await self._run(self.handlers.track_event, request, context, True)

    async def StreamEvents(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> pb.StreamEventsResponse:
        summary = pb.StreamEventsResponse()
        index = 0
        loop = asyncio.get_running_loop()
        track = self.handlers.track_in_stream
        async for message in request_iterator:
            start = time.perf_counter()
            if self.blocking is not None:
                await loop.run_in_executor(self.blocking, track, message, index, summary)
            else:
                track(message, index, summary)
            self.handlers.metrics.observe_latency("StreamEvents", time.perf_counter() - start)
            index += 1
        return summary

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        return await self._run(self.handlers.recommend, request, context, True)

    async def ForgetSession(
        self, request: pb.ForgetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ForgetSessionResponse:
        return await self._run(self.handlers.forget_session, request, context, True)


class AdminServicer(pb_grpc.AdminServicer):
    """A reload takes seconds, so it runs on a thread, never on the loop."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    async def ReloadModel(
        self, request: pb.ReloadModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadModelResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.handlers.reload_model, request, None)
