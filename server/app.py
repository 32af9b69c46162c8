"""Builds and runs one server process: gRPC services, health, reflection, metrics, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel, load_model
from server.core.recommend import Recommender, RecommendLimits
from server.core.redis_store import RedisStore
from server.core.registry import PRIMARY, ModelRegistry
from server.core.reload import BundleWatcher, Reloader, ReloadResult
from server.core.scoring import Limits, Scorer
from server.core.sessions import SessionStore
from server.metrics import Metrics, serve_metrics
from server.settings import Settings
from server.transport.admission import Admission
from server.transport.guard import CallGuard
from server.transport.handlers import Handlers
from server.transport.health import Health
from server.transport.servicers import AdminServicer, RecommenderServicer
from server.transport.shedding import QueueMonitor, core_counters_since, existing_server_ids
from server.transport.watchdog import Watchdog
from server.warmup import warm_up

log = logging.getLogger(__name__)

VARIANT_B = "B"
RECOMMENDER = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
ADMIN = pb.DESCRIPTOR.services_by_name["Admin"].full_name
SERVICE_NAMES = (
    RECOMMENDER,
    ADMIN,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
# Health is reported for the whole server ("") and for the Recommender service by name.
HEALTH_SERVICES = ("", RECOMMENDER)


def make_store(settings: Settings) -> SessionStore:
    """The configured session store."""
    if settings.session_store == "memory":
        return MemoryStore(
            max_sessions=settings.max_sessions, ttl_seconds=settings.session_ttl_seconds
        )
    return RedisStore(settings.session_store, ttl_seconds=settings.session_ttl_seconds)


class App:
    """The process-wide objects: models, session store, core services, handlers and metrics."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry = ModelRegistry()
        self.store = make_store(settings)
        self.bundles = {PRIMARY: settings.bundle}
        if settings.ab_bundle is not None:
            self.bundles[VARIANT_B] = settings.ab_bundle
        self.reloader = Reloader(self.registry, self.load, self._on_reload)
        self.handlers = Handlers(
            registry=self.registry,
            scorer=Scorer(
                self.registry, Limits(max_candidates=settings.max_candidates), self.store
            ),
            recommender=Recommender(
                self.registry,
                self.store,
                RecommendLimits(settings.catalog_limit, settings.retrieval_size),
            ),
            store=self.store,
            reloader=self.reloader,
            bundles=self.bundles,
            metrics=self.metrics,
        )
        self.watchers: list[BundleWatcher] = []

    def load(self, bundle: Path) -> LoadedModel:
        """Loads a bundle (files, parity probe) and warms it up; raises Unavailable if unfit."""
        model = load_model(bundle, self.settings.backend)
        warm_up(model, self.settings.warmup_requests)
        return model

    def load_all(self) -> None:
        """Loads every configured variant; only then is the server healthy."""
        shares = {PRIMARY: 1.0 - self.settings.ab_share, VARIANT_B: self.settings.ab_share}
        for variant, bundle in self.bundles.items():
            share = shares[variant] if len(self.bundles) > 1 else 1.0
            self.registry.install(variant, self.load(bundle), share=share)
        self._publish_models()
        if self.settings.watch_seconds > 0:
            for variant, bundle in self.bundles.items():
                watcher = BundleWatcher(self.reloader, variant, bundle, self.settings.watch_seconds)
                watcher.start()
                self.watchers.append(watcher)

    def reload_all(self) -> None:
        """SIGHUP: re-reads every configured bundle path (e.g. a moved symlink)."""
        for variant, bundle in self.bundles.items():
            self.reloader.reload(variant, bundle)

    def stop_watching(self) -> None:
        """Stops the bundle watchers."""
        for watcher in self.watchers:
            watcher.stopped.set()

    def _on_reload(self, result: ReloadResult) -> None:
        self.metrics.reloads.labels("swapped" if result.swapped else "failed").inc()
        self._publish_models()

    def _publish_models(self) -> None:
        self.metrics.set_models(
            [(v.name, v.model.version, v.model.backend.name) for v in self.registry.variants()]
        )


def grpc_options(settings: Settings) -> list[tuple[str, Any]]:
    """Channel arguments of the server: explicit message limits and port sharing."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Several worker processes bind the same port; the kernel spreads connections.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]


def run(settings: Settings) -> None:
    """Runs the server until SIGTERM/SIGINT."""
    asyncio.run(serve(settings))


async def serve(
    settings: Settings, app: App | None = None, stop: asyncio.Event | None = None
) -> None:
    """Serves until `stop` is set or, on the main thread, SIGTERM/SIGINT arrives; an embedding
    caller (a test running a real server in-process) may pass a prepared `app`."""
    app = app or App(settings)
    metrics = app.metrics
    before = existing_server_ids()
    admission = Admission(settings.max_in_flight, settings.max_open_streams, metrics)
    monitor = QueueMonitor(None, settings.max_queue_ms / 1000, metrics)
    guard = CallGuard(
        admission,
        monitor,
        metrics,
        guarded_services=(RECOMMENDER,),
        measured_services=(RECOMMENDER, ADMIN),
    )
    server = grpc.aio.server(interceptors=[guard], options=grpc_options(settings))
    # The core's counters belong to the server just created: only now can the monitor read them.
    monitor.core = core_counters_since(before)
    remote_store = not isinstance(app.store, MemoryStore)
    blocking = ThreadPoolExecutor(settings.threads, "store") if remote_store else None
    pb_grpc.add_RecommenderServicer_to_server(RecommenderServicer(app.handlers, blocking), server)
    pb_grpc.add_AdminServicer_to_server(AdminServicer(app.handlers), server)
    health = Health(HEALTH_SERVICES)
    await health.set_serving(False)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    port = server.add_insecure_port(settings.address)
    await server.start()
    log.info("listening on %s:%d", settings.host, port)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, app.reload_all))
    if settings.metrics_port >= 0:
        serve_metrics(settings.metrics_port, settings.host)
    sampling = asyncio.create_task(monitor.run(), name="queue-monitor")
    # Loading takes seconds (parity probe, warm-up): keep answering health meanwhile.
    await loop.run_in_executor(None, app.load_all)
    await health.set_serving(True)
    watchdog = Watchdog(admission.unary, health.set_serving, settings.stall_seconds, metrics)
    watching = asyncio.create_task(watchdog.run(), name="watchdog")
    log.info("SERVING %s", _describe(app))
    await stop.wait()
    log.info(
        "shutting down: health NOT_SERVING, letting in-flight RPCs finish (%.1fs grace)",
        settings.grace_seconds,
    )
    app.stop_watching()
    watching.cancel()  # from now on health stays NOT_SERVING
    await health.enter_graceful_shutdown()
    remaining = await _drain(admission, monitor, settings)
    await server.stop(remaining)
    sampling.cancel()
    if blocking is not None:
        blocking.shutdown(wait=True)
    log.info("stopped")


async def _drain(admission: Admission, monitor: QueueMonitor, settings: Settings) -> float:
    """Keeps serving for at least the drain period (so calls already sent still arrive and
    load balancers notice NOT_SERVING), then until no unary call is being handled or queued in
    gRPC's core, within the grace period; returns the grace time left. Stopping the server at
    once would cancel calls it has accepted but not yet dispatched."""
    start = time.monotonic()
    deadline = start + settings.grace_seconds
    drain_until = start + min(settings.drain_seconds, settings.grace_seconds)
    while (now := time.monotonic()) < deadline:
        if now >= drain_until and admission.unary.used == 0 and monitor.queued == 0:
            break
        await asyncio.sleep(0.01)  # the queue monitor samples the core meanwhile
    return max(0.0, deadline - time.monotonic())


def _describe(app: App) -> str:
    return ", ".join(
        f"{v.name}={v.model.version} ({v.model.backend.name}, share {v.share:g})"
        for v in app.registry.variants()
    )
