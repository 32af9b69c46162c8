"""Recommender and Admin servicers for the thread-pool and asyncio servers (thin over Handlers)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.errors import Overloaded
from server.transport.handlers import Handlers, Outcome, deadline_of

Handler = Callable[[Any, float | None], Any]


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that knows how many RPCs it holds, queued or running.

    grpc's sync server queues accepted RPCs in its executor; counting here (not in the handler)
    is what lets the in-flight limit see a backlog, and answer with a message naming the limit.
    """

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="rpc")
        self._lock = threading.Lock()
        self.pending = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self.pending -= 1


class SyncRecommender(pb_grpc.RecommenderServicer):
    """Recommender on grpc's thread-pool server."""

    def __init__(self, handlers: Handlers, executor: CountingExecutor, max_in_flight: int) -> None:
        self.handlers = handlers
        self.executor = executor
        self.max_in_flight = max_in_flight

    def _call(self, rpc: str, handler: Handler, request: Any, context: grpc.ServicerContext) -> Any:
        if self.executor.pending > self.max_in_flight:
            self.handlers.metrics.rejected.labels("in_flight").inc()
            message = str(Overloaded(self.max_in_flight))
            outcome = Outcome(None, grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        else:
            outcome = self.handlers.run(rpc, handler, request, deadline_of(context))
        if outcome.response is None:
            context.abort(outcome.code, outcome.message)
        return outcome.response

    def Score(self, request: pb.ScoreRequest, context: grpc.ServicerContext) -> pb.ScoreResponse:
        return self._call("Score", self.handlers.score, request, context)

    def ScoreStream(
        self, request_iterator: Iterator[pb.ScoreRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ScoreResponse]:
        for index, request in enumerate(request_iterator):
            outcome = self.handlers.run(
                "ScoreStream", self.handlers.score_stream, request, deadline_of(context)
            )
            if outcome.response is None:
                context.abort(outcome.code, f"request {index}: {outcome.message}")
            yield outcome.response

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return self._call("GetModelInfo", self.handlers.model_info, request, context)

    def TrackEvent(
        self, request: pb.TrackEventRequest, context: grpc.ServicerContext
    ) -> pb.TrackEventResponse:
        return self._call("TrackEvent", self.handlers.track_event, request, context)

    def StreamEvents(
        self, request_iterator: Iterator[pb.TrackEventRequest], context: grpc.ServicerContext
    ) -> pb.StreamEventsResponse:
        def consume(_: None, __: float | None) -> pb.StreamEventsResponse:
            summary = pb.StreamEventsResponse()
            for index, message in enumerate(request_iterator):
                self.handlers.track_in_stream(message, index, summary)
            return summary

        return self._call("StreamEvents", consume, None, context)

    def Recommend(
        self, request: pb.RecommendRequest, context: grpc.ServicerContext
    ) -> pb.RecommendResponse:
        return self._call("Recommend", self.handlers.recommend, request, context)

    def ForgetSession(
        self, request: pb.ForgetSessionRequest, context: grpc.ServicerContext
    ) -> pb.ForgetSessionResponse:
        return self._call("ForgetSession", self.handlers.forget_session, request, context)


class AioRecommender(pb_grpc.RecommenderServicer):
    """Recommender on grpc.aio. Handlers take microseconds, so they run inline on the event loop
    (no thread hop per call); handlers that wait on a remote session store run on `blocking`
    threads instead, so a Redis round trip never stalls the loop."""

    def __init__(
        self, handlers: Handlers, blocking: ThreadPoolExecutor | None, max_in_flight: int
    ) -> None:
        self.handlers = handlers
        self.blocking = blocking
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        """Counts the call (open streams included), then yields once so every call already
        dispatched registers before any runs; a call above the limit is refused at once.

        Calls still queued inside gRPC's core are not visible here (grpc.aio hands Python one
        call per loop turn); their waiting is bounded by their deadlines. The thread-pool
        transport counts its whole backlog instead (CountingExecutor)."""
        self.in_flight += 1
        await asyncio.sleep(0)
        if self.in_flight > self.max_in_flight:
            self.in_flight -= 1
            self.handlers.metrics.rejected.labels("in_flight").inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, str(Overloaded(self.max_in_flight))
            )

    async def _call(
        self,
        rpc: str,
        handler: Handler,
        request: Any,
        context: grpc.aio.ServicerContext,
        uses_store: bool = False,
    ) -> Any:
        await self._admit(context)
        try:
            deadline = deadline_of(context)
            if uses_store and self.blocking is not None:
                loop = asyncio.get_running_loop()
                outcome = await loop.run_in_executor(
                    self.blocking, self.handlers.run, rpc, handler, request, deadline
                )
            else:
                outcome = self.handlers.run(rpc, handler, request, deadline)
        finally:
            self.in_flight -= 1
        if outcome.response is None:
            await context.abort(outcome.code, outcome.message)
        return outcome.response

    async def Score(
        self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreResponse:
        # Only a context holding nothing but a session id reads the store.
        uses_store = request.context.session_id != "" and not request.context.current_product_id
        return await self._call("Score", self.handlers.score, request, context, uses_store)

    async def ScoreStream(
        self, request_iterator: AsyncIterator[pb.ScoreRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScoreResponse]:
        await self._admit(context)  # an open stream is an RPC in flight
        try:
            index = 0
            async for request in request_iterator:
                outcome = self.handlers.run(
                    "ScoreStream", self.handlers.score_stream, request, deadline_of(context)
                )
                if outcome.response is None:
                    await context.abort(outcome.code, f"request {index}: {outcome.message}")
                yield outcome.response
                index += 1
        finally:
            self.in_flight -= 1

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return await self._call("GetModelInfo", self.handlers.model_info, request, context)

    async def TrackEvent(
        self, request: pb.TrackEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.TrackEventResponse:
        return await self._call("TrackEvent", self.handlers.track_event, request, context, True)

    async def StreamEvents(
        self,
        request_iterator: AsyncIterator[pb.TrackEventRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.StreamEventsResponse:
        await self._admit(context)
        try:
            return await self._stream_events(request_iterator, context)
        finally:
            self.in_flight -= 1

    async def _stream_events(
        self,
        request_iterator: AsyncIterator[pb.TrackEventRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.StreamEventsResponse:
        start = time.perf_counter()
        summary = pb.StreamEventsResponse()
        index = 0
        loop = asyncio.get_running_loop()
        track = self.handlers.track_in_stream
        async for message in request_iterator:
            if self.blocking is not None:
                outcome = await loop.run_in_executor(
                    self.blocking,
                    self.handlers.attempt,
                    "StreamEvents",
                    track,
                    message,
                    index,
                    summary,
                )
            else:
                outcome = self.handlers.attempt("StreamEvents", track, message, index, summary)
            if outcome.response is None:
                self.handlers.metrics.observe_request(
                    "StreamEvents", outcome.code.name, time.perf_counter() - start
                )
                await context.abort(outcome.code, outcome.message)
            index += 1
        self.handlers.metrics.observe_request("StreamEvents", "OK", time.perf_counter() - start)
        return summary

    async def Recommend(
        self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecommendResponse:
        return await self._call("Recommend", self.handlers.recommend, request, context, True)

    async def ForgetSession(
        self, request: pb.ForgetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ForgetSessionResponse:
        return await self._call(
            "ForgetSession", self.handlers.forget_session, request, context, True
        )


class SyncAdmin(pb_grpc.AdminServicer):
    """Admin on the thread-pool server."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    def ReloadModel(
        self, request: pb.ReloadModelRequest, context: grpc.ServicerContext
    ) -> pb.ReloadModelResponse:
        outcome = self.handlers.run("ReloadModel", self.handlers.reload_model, request, None)
        if outcome.response is None:
            context.abort(outcome.code, outcome.message)
        return outcome.response


class AioAdmin(pb_grpc.AdminServicer):
    """Admin on grpc.aio: a reload takes seconds, so it runs on a thread, never on the loop."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    async def ReloadModel(
        self, request: pb.ReloadModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadModelResponse:
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            None, self.handlers.run, "ReloadModel", self.handlers.reload_model, request, None
        )
        if outcome.response is None:
            await context.abort(outcome.code, outcome.message)
        return outcome.response
