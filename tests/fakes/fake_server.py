"""A fake reco.v1.Recommender server for load-test development: numpy scores, same command line.

It takes the real server's flags (--bundle, --host, --port, --metrics-port, --backend, ...) so the
load tester can start it through the same server command, plus --delay-ms to act slow. It is
NOT the product: scores are a fixed random projection, there is no model, no metrics endpoint.

    python tests/fakes/fake_server.py --port 50051 [--delay-ms 2]
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from loadtest.products import load_product_ids
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc

logger = logging.getLogger("fake_server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
EMBEDDING_DIM = 8
DEFAULT_THRESHOLD = 0.7


class FakeRecommender(pb_grpc.RecommenderServicer):
    """Scores candidates with a fixed random projection; keeps sessions in a dict."""

    def __init__(self, product_ids: tuple[str, ...], backend: str, delay_s: float) -> None:
        self.product_ids = product_ids
        self.index = {p: i for i, p in enumerate(product_ids)}
        rng = np.random.default_rng(7)
        self.embeddings = rng.normal(size=(len(product_ids), EMBEDDING_DIM)).astype(np.float32)
        self.backend = backend
        self.delay_s = delay_s
        self.sessions: dict[str, list[str]] = {}
        self.carts: dict[str, set[str]] = {}
        self.seen_events: set[str] = set()
        self.lock = threading.Lock()

    def _context_vector(self, product_ids: list[str]) -> np.ndarray:
        known = [self.index[p] for p in product_ids if p in self.index]
        if not known:
            return np.zeros(EMBEDDING_DIM, dtype=np.float32)
        return self.embeddings[known].mean(axis=0)

    def _scores(self, context: np.ndarray, rows: np.ndarray) -> np.ndarray:
        logits = self.embeddings[rows] @ context
        return 1.0 / (1.0 + np.exp(-logits))

    def _pause(self) -> None:
        if self.delay_s > 0:
            time.sleep(self.delay_s)

    def Score(  # noqa: N802 - grpc names servicer methods after the RPCs
        self, request: pb.ScoreRequest, context: grpc.ServicerContext
    ) -> pb.ScoreResponse:
        started = time.perf_counter()
        self._pause()
        rows = np.empty(len(request.candidates), dtype=np.int64)
        for i, candidate in enumerate(request.candidates):
            if not candidate.product_id:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"candidates[{i}].product_id: empty ('')"
                )
            if candidate.HasField("price") and not (
                math.isfinite(candidate.price) and candidate.price >= 0
            ):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"candidates[{i}].price: {candidate.price} (must be a number >= 0)",
                )
            if candidate.product_id not in self.index:
                context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"candidates[{i}].product_id: unknown product {candidate.product_id!r}",
                )
            rows[i] = self.index[candidate.product_id]
        ctx = request.context
        vector = self._context_vector([ctx.current_product_id, *ctx.previous_product_ids])
        scores = self._scores(vector, rows)
        threshold = request.min_score if request.HasField("min_score") else DEFAULT_THRESHOLD
        order = np.argsort(-scores, kind="stable")
        order = order[scores[order] >= threshold]
        if request.top_k > 0:
            order = order[: request.top_k]
        ranked = [
            pb.RankedItem(
                product_id=request.candidates[int(i)].product_id,
                score=float(scores[i]),
                rank=rank + 1,
                index=int(i),
            )
            for rank, i in enumerate(order)
        ]
        return pb.ScoreResponse(
            scores=scores.tolist(),
            ranked=ranked,
            model_version="fake",
            backend=self.backend,
            server_time_us=max(1, int((time.perf_counter() - started) * 1e6)),
        )

    def ScoreStream(  # noqa: N802 - grpc names servicer methods after the RPCs
        self, request_iterator: Iterator[pb.ScoreRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ScoreResponse]:
        for request in request_iterator:
            yield self.Score(request, context)

    def GetModelInfo(  # noqa: N802 - grpc names servicer methods after the RPCs
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return pb.GetModelInfoResponse(
            models=[
                pb.ModelInfo(
                    version="fake", backend=self.backend, default_threshold=DEFAULT_THRESHOLD
                )
            ]
        )

    def TrackEvent(  # noqa: N802 - grpc names servicer methods after the RPCs
        self, request: pb.TrackEventRequest, context: grpc.ServicerContext
    ) -> pb.TrackEventResponse:
        self._pause()
        event = request.event
        if not event.session_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "event.session_id: empty ('')")
        if not event.product_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "event.product_id: empty ('')")
        if event.HasField("scroll_depth") and not 0.0 <= event.scroll_depth <= 1.0:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"event.scroll_depth: {event.scroll_depth} (must be in 0..1)",
            )
        with self.lock:
            duplicate = event.event_id in self.seen_events
            if not duplicate:
                self.seen_events.add(event.event_id)
                views = self.sessions.setdefault(event.session_id, [])
                cart = self.carts.setdefault(event.session_id, set())
                if event.type == pb.EVENT_TYPE_ADD_TO_CART:
                    cart.add(event.product_id)
                views.insert(0, event.product_id)
                del views[4:]
            views = list(self.sessions.get(event.session_id, []))
            cart_ids = sorted(self.carts.get(event.session_id, set()))
        return pb.TrackEventResponse(
            duplicate=duplicate,
            session=pb.SessionSummary(
                session_id=event.session_id,
                current_product_id=views[0] if views else "",
                previous_product_ids=views[1:4],
                cart_product_ids=cart_ids,
            ),
        )

    def Recommend(  # noqa: N802 - grpc names servicer methods after the RPCs
        self, request: pb.RecommendRequest, context: grpc.ServicerContext
    ) -> pb.RecommendResponse:
        started = time.perf_counter()
        self._pause()
        with self.lock:
            views = list(self.sessions.get(request.session_id, []))
            cart = set(self.carts.get(request.session_id, set()))
        rows = np.arange(len(self.product_ids))
        scores = self._scores(self._context_vector(views), rows)
        k = request.k or 3
        excluded = cart | set(views[:1]) | set(request.exclude_product_ids)
        items = [
            pb.RecommendedItem(product_id=self.product_ids[i], score=float(scores[i]))
            for i in np.argsort(-scores, kind="stable")
            if self.product_ids[i] not in excluded
        ][:k]
        return pb.RecommendResponse(
            items=items,
            cold_start=not views,
            model_version="fake",
            backend=self.backend,
            candidates_scored=len(rows),
            server_time_us=max(1, int((time.perf_counter() - started) * 1e6)),
        )

    def ForgetSession(  # noqa: N802 - grpc names servicer methods after the RPCs
        self, request: pb.ForgetSessionRequest, context: grpc.ServicerContext
    ) -> pb.ForgetSessionResponse:
        with self.lock:
            existed = self.sessions.pop(request.session_id, None) is not None
            self.carts.pop(request.session_id, None)
        return pb.ForgetSessionResponse(existed=existed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The real server's flags (most ignored) plus --delay-ms."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/latest"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--metrics-port", type=int, default=0, help="accepted and ignored")
    parser.add_argument("--backend", default="auto", help="echoed back as the backend name")
    parser.add_argument("--workers", type=int, default=1, help="accepted and ignored")
    parser.add_argument("--session-store", default="memory", help="accepted and ignored")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="sleep per request")
    parser.add_argument("--threads", type=int, default=8)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serves until SIGTERM or SIGINT."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fake_server %(message)s")
    products = load_product_ids(args.bundle / "catalog.csv")
    backend = f"fake-{args.backend}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads))
    pb_grpc.add_RecommenderServicer_to_server(
        FakeRecommender(products, backend, args.delay_ms / 1e3), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logger.info("serving %s on %s:%s (backend %s)", SERVICE_NAME, args.host, args.port, backend)

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=5).wait()
    logger.info("stopped")


if __name__ == "__main__":
    main()
