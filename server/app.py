"""Builds and runs one server process: gRPC services, health, reflection, metrics, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.model import load_model
from server.core.registry import PRIMARY, ModelRegistry
from server.core.scoring import Limits, Scorer
from server.metrics import Metrics, serve_metrics
from server.settings import Settings
from server.transport.handlers import Handlers
from server.transport.servicers import AioRecommender, CountingExecutor, SyncRecommender
from server.warmup import warm_up

log = logging.getLogger(__name__)

RECOMMENDER = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
SERVICE_NAMES = (
    RECOMMENDER,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
# Health is reported for the whole server ("") and for the Recommender service by name.
HEALTH_SERVICES = ("", RECOMMENDER)


class App:
    """The process-wide objects: model registry, scorer, handlers and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.registry = ModelRegistry()
        self.scorer = Scorer(self.registry, Limits(max_candidates=settings.max_candidates))
        self.handlers = Handlers(self.registry, self.scorer, self.metrics)

    def load_primary(self) -> None:
        """Loads, checks and warms the configured bundle, then makes it the one served."""
        model = load_model(self.settings.bundle, self.settings.backend)
        warm_up(model, self.settings.warmup_requests)
        self.registry.install(PRIMARY, model)
        self.metrics.set_models([(PRIMARY, model.version, model.backend.name)])


def grpc_options(settings: Settings) -> list[tuple[str, Any]]:
    """Channel arguments of the server: explicit message limits and port sharing."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Several worker processes bind the same port; the kernel spreads connections.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]


def set_health(servicer: health.HealthServicer, status: int) -> None:
    """Sets one status on every name the health service answers for."""
    for name in HEALTH_SERVICES:
        servicer.set(name, status)


def run_sync(settings: Settings, stop: threading.Event | None = None) -> None:
    """Runs grpc's thread-pool server until SIGTERM/SIGINT (or `stop` is set)."""
    app = App(settings)
    executor = CountingExecutor(settings.threads)
    server = grpc.server(executor, options=grpc_options(settings))
    pb_grpc.add_RecommenderServicer_to_server(
        SyncRecommender(app.handlers, executor, settings.max_in_flight), server
    )
    health_servicer = health.HealthServicer()
    set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    port = server.add_insecure_port(settings.address)
    server.start()
    log.info("listening on %s:%d (sync, %d threads)", settings.host, port, settings.threads)
    stop = stop or threading.Event()
    _on_signals(stop.set)
    if settings.metrics_port >= 0:
        serve_metrics(settings.metrics_port, settings.host)
    app.load_primary()
    set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    log.info("SERVING model %s", app.registry.variants()[0].model.version)
    stop.wait()
    log.info("shutting down: health NOT_SERVING, letting in-flight RPCs finish (%.1fs grace)",
             settings.grace_seconds)  # fmt: skip
    health_servicer.enter_graceful_shutdown()
    server.stop(settings.grace_seconds).wait()
    executor.shutdown(wait=True)
    log.info("stopped")


def run_aio(settings: Settings) -> None:
    """Runs the grpc.aio server until SIGTERM/SIGINT."""
    asyncio.run(_serve_aio(settings))


async def _serve_aio(settings: Settings) -> None:
    app = App(settings)
    # grpc.aio dispatches each call as a task on this loop; its own limiter is the one place that
    # sees calls accepted but not yet run, so it enforces --max-in-flight here.
    server = grpc.aio.server(
        options=grpc_options(settings), maximum_concurrent_rpcs=settings.max_in_flight
    )
    pb_grpc.add_RecommenderServicer_to_server(AioRecommender(app.handlers), server)
    health_servicer = health_aio.HealthServicer()
    for name in HEALTH_SERVICES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    port = server.add_insecure_port(settings.address)
    await server.start()
    log.info("listening on %s:%d (aio)", settings.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.metrics_port >= 0:
        serve_metrics(settings.metrics_port, settings.host)
    # Loading takes seconds (parity probe, warm-up): keep answering health meanwhile.
    await loop.run_in_executor(None, app.load_primary)
    for name in HEALTH_SERVICES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("SERVING model %s", app.registry.variants()[0].model.version)
    await stop.wait()
    log.info("shutting down: health NOT_SERVING, letting in-flight RPCs finish (%.1fs grace)",
             settings.grace_seconds)  # fmt: skip
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
    log.info("stopped")


def _on_signals(callback: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: callback())
