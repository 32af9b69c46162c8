"""Builds and runs one server process: gRPC services, health, reflection, metrics, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
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
from server.core.sessions import SessionLimits, SessionStore
from server.flags import SettingError
from server.gcpause import GcPauseRecorder, freeze_loaded_objects
from server.listeners import bind_public, describe_public, start_admin_aio, start_admin_sync
from server.metrics import Metrics, serve_metrics
from server.settings import Settings
from server.transport.handlers import Handlers
from server.transport.servicers import AioRecommender, CountingExecutor, SyncRecommender
from server.warmup import warm_up
from training.signing import SigningKeyError, load_key

log = logging.getLogger(__name__)

VARIANT_B = "B"
RECOMMENDER = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
# The public port's services: Admin is never among them (server.listeners serves it apart).
SERVICE_NAMES = (
    RECOMMENDER,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
# Health is reported for the whole server ("") and for the Recommender service by name.
HEALTH_SERVICES = ("", RECOMMENDER)


def session_limits(settings: Settings) -> SessionLimits:
    """The per-session caps and the accepted event-time window."""
    return SessionLimits(
        max_events=settings.max_session_events,
        max_bytes=settings.max_session_bytes,
        max_id_bytes=settings.max_id_bytes,
        max_age_seconds=settings.max_event_age_seconds,
        max_ahead_seconds=settings.max_event_ahead_seconds,
    )


def make_store(settings: Settings) -> SessionStore:
    """The configured session store; a Redis store's persistence is checked (and, with
    --require-durable-sessions, required) before anything is served."""
    limits = session_limits(settings)
    if settings.session_store == "memory":
        store: SessionStore = MemoryStore(
            max_sessions=settings.max_sessions,
            ttl_seconds=settings.session_ttl_seconds,
            limits=limits,
        )
    else:
        redis_store = RedisStore(
            settings.session_store, ttl_seconds=settings.session_ttl_seconds, limits=limits
        )
        redis_store.check_persistence(settings.require_durable_sessions)
        store = redis_store
    log.info("sessions: %s", store.describe())
    return store


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
        # Bundles load only from under the root (preflight resolved it; embedding callers such
        # as tests may leave it to default to the directory holding --bundle).
        self.bundle_root = Path(
            os.path.realpath(settings.bundle_root or Path(os.path.realpath(settings.bundle)).parent)
        )
        try:
            self.key = load_key(settings.bundle_key_file)
        except SigningKeyError as exc:
            raise SettingError(f"--bundle-key-file: {exc}") from None
        self.reloader = Reloader(
            self.registry, self.load, self._on_reload, self.bundles, self.bundle_root
        )
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
            metrics=self.metrics,
        )
        self.watchers: list[BundleWatcher] = []
        self.gc_pauses = GcPauseRecorder(self.metrics).start()

    def load(self, bundle: Path) -> LoadedModel:
        """Loads a bundle from under the bundle root (signature, files, parity probe) and warms
        it up; raises Unavailable if unfit."""
        model = load_model(
            bundle,
            self.settings.backend,
            root=self.bundle_root,
            key=self.key,
            scratch_dir=self.settings.runtime_dir,
        )
        warm_up(model, self.settings.warmup_requests)
        return model

    def load_all(self) -> None:
        """Loads every configured variant; only then is the server healthy."""
        shares = {PRIMARY: 1.0 - self.settings.ab_share, VARIANT_B: self.settings.ab_share}
        for variant, bundle in self.bundles.items():
            share = shares[variant] if len(self.bundles) > 1 else 1.0
            self.registry.install(variant, self.load(bundle), share=share)
        self._publish_models()
        freeze_loaded_objects()
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
        if result.swapped:
            freeze_loaded_objects()

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


def run_sync(
    settings: Settings,
    stop: threading.Event | None = None,
    app: App | None = None,
    on_serving: Callable[[], None] = lambda: None,
) -> None:
    """Runs grpc's thread-pool server until SIGTERM/SIGINT (or `stop` is set).

    Signal handlers are installed only on the main thread; an embedding caller (a test running
    a real server in-process) stops it with `stop` and may pass a prepared `app`. `on_serving`
    runs once health says SERVING (the worker supervisor counts it).
    """
    app = app or App(settings)
    executor = CountingExecutor(settings.threads)
    server = grpc.server(executor, options=grpc_options(settings))
    pb_grpc.add_RecommenderServicer_to_server(
        SyncRecommender(app.handlers, executor, settings.max_in_flight), server
    )
    health_servicer = health.HealthServicer()
    for name in HEALTH_SERVICES:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    if _shares_port(settings):
        app.load_all()
    port = bind_public(server, settings)
    server.start()
    log.info("listening on %s:%d (sync, %s, %d threads)",
             settings.host, port, describe_public(settings), settings.threads)  # fmt: skip
    admin = start_admin_sync(settings, app.handlers)
    stop = stop or threading.Event()
    _on_signals(stop.set, lambda: threading.Thread(target=app.reload_all, daemon=True).start())
    _serve_metrics(settings)
    if not _shares_port(settings):
        app.load_all()
    for name in HEALTH_SERVICES:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("SERVING %s", _describe(app))
    on_serving()
    # A timed wait: a signal delivered to one of grpc's threads only runs its Python handler
    # when the main thread next wakes, and an untimed wait may never wake.
    while not stop.wait(0.5):
        pass
    _log_shutdown(settings)
    app.stop_watching()
    health_servicer.enter_graceful_shutdown()
    # Keep serving while load balancers notice NOT_SERVING and the backlog drains: stopping
    # the grpc server at once would cancel calls it has accepted but not yet dispatched.
    remaining = _drain(lambda: executor.pending > 0, app.handlers, settings)
    if admin is not None:
        admin.stop(0)
    server.stop(remaining).wait()
    executor.shutdown(wait=True)
    log.info("stopped")


def run_aio(settings: Settings, on_serving: Callable[[], None] = lambda: None) -> None:
    """Runs the grpc.aio server until SIGTERM/SIGINT; `on_serving` runs once it is SERVING."""
    asyncio.run(_serve_aio(settings, on_serving))


async def _serve_aio(settings: Settings, on_serving: Callable[[], None]) -> None:
    app = App(settings)
    server = grpc.aio.server(options=grpc_options(settings))
    remote_store = not isinstance(app.store, MemoryStore)
    blocking = ThreadPoolExecutor(settings.threads, "store") if remote_store else None
    pb_grpc.add_RecommenderServicer_to_server(
        AioRecommender(app.handlers, blocking, settings.max_in_flight), server
    )
    health_servicer = health_aio.HealthServicer()
    for name in HEALTH_SERVICES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    loop = asyncio.get_running_loop()
    if _shares_port(settings):
        await loop.run_in_executor(None, app.load_all)
    port = bind_public(server, settings)
    await server.start()
    log.info("listening on %s:%d (aio, %s)", settings.host, port, describe_public(settings))
    admin = await start_admin_aio(settings, app.handlers)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, app.reload_all))
    _serve_metrics(settings)
    if not _shares_port(settings):
        # Loading takes seconds (parity probe, warm-up): keep answering health meanwhile.
        await loop.run_in_executor(None, app.load_all)
    for name in HEALTH_SERVICES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("SERVING %s", _describe(app))
    on_serving()
    await stop.wait()
    _log_shutdown(settings)
    app.stop_watching()
    await health_servicer.enter_graceful_shutdown()
    # As in run_sync: drain the accepted backlog before grpc cancels what it has not dispatched.
    # The handlers run on this loop, so the drain waits in a thread.
    remaining = await loop.run_in_executor(None, _drain, lambda: False, app.handlers, settings)
    if admin is not None:
        await admin.stop(0)
    await server.stop(remaining)
    if blocking is not None:
        blocking.shutdown(wait=True)
    log.info("stopped")


def _shares_port(settings: Settings) -> bool:
    """Workers share the port (SO_REUSEPORT), and the kernel hands connections to every
    listener: a worker binds only once its model is loaded, so a replacement for a crashed
    worker never answers UNAVAILABLE meanwhile. A single process binds first and reports
    NOT_SERVING while it loads."""
    return settings.workers > 1


def _serve_metrics(settings: Settings) -> None:
    if settings.metrics_port >= 0:
        serve_metrics(settings.metrics_port, settings.host)


def _drain(
    queued: Callable[[], bool], handlers: Handlers, settings: Settings, quiet: float = 0.1
) -> float:
    """Keeps serving for at least the drain period, then until nothing is queued and no handler
    has run for `quiet` seconds, within the grace period; returns the grace time left."""
    start = time.monotonic()
    deadline = start + settings.grace_seconds
    drain_until = start + min(settings.drain_seconds, settings.grace_seconds)
    while (now := time.monotonic()) < deadline:
        if now >= drain_until and not queued() and now - handlers.last_activity >= quiet:
            break
        time.sleep(0.01)  # polling counters; the RPC threads (or loop) finish the backlog
    return max(0.0, deadline - time.monotonic())


def _describe(app: App) -> str:
    return ", ".join(
        f"{v.name}={v.model.version} ({v.model.backend.name}, share {v.share:g})"
        for v in app.registry.variants()
    )


def _log_shutdown(settings: Settings) -> None:
    log.info(
        "shutting down: health NOT_SERVING, letting in-flight RPCs finish (%.1fs grace)",
        settings.grace_seconds,
    )


def _on_signals(stop: Callable[[], None], reload: Callable[[], None]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop())
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reload())
