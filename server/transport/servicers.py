"""Recommender servicers for the thread-pool and asyncio servers (thin: Handlers does the work)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.errors import Overloaded
from server.transport.handlers import Handlers, Outcome, deadline_of


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

    def _call(self, rpc: str, handler: Callable[[Any, float | None], Any], request: Any,
              context: grpc.ServicerContext) -> Any:  # fmt: skip
        if self.executor.pending > self.max_in_flight:
            self.handlers.metrics.rejected.labels("in_flight").inc()
            outcome = Outcome(
                None, grpc.StatusCode.RESOURCE_EXHAUSTED, str(Overloaded(self.max_in_flight))
            )
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


class AioRecommender(pb_grpc.RecommenderServicer):
    """Recommender on grpc.aio: handlers run inline on the event loop (they take microseconds
    and have nothing worth awaiting), so there is no thread hop per call. The in-flight limit
    is grpc.aio's maximum_concurrent_rpcs (set where the server is built)."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    async def _call(self, rpc: str, handler: Callable[[Any, float | None], Any], request: Any,
                    context: grpc.aio.ServicerContext) -> Any:  # fmt: skip
        outcome = self.handlers.run(rpc, handler, request, deadline_of(context))
        if outcome.response is None:
            await context.abort(outcome.code, outcome.message)
        return outcome.response

    async def Score(
        self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreResponse:
        return await self._call("Score", self.handlers.score, request, context)

    async def ScoreStream(
        self, request_iterator: AsyncIterator[pb.ScoreRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScoreResponse]:
        index = 0
        async for request in request_iterator:
            outcome = self.handlers.run(
                "ScoreStream", self.handlers.score_stream, request, deadline_of(context)
            )
            if outcome.response is None:
                await context.abort(outcome.code, f"request {index}: {outcome.message}")
            yield outcome.response
            index += 1

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return await self._call("GetModelInfo", self.handlers.model_info, request, context)
