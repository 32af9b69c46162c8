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
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reco import SigningKeyError, load_key
from reco.inference_v2 import grpc_predict_v2_pb2_grpc as v2_grpc
from reco.settings import SettingError
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.core.exploration import Explorer
from server.core.impressions import ImpressionLog, LogLimits, Sink
from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel, load_model
from server.core.recommend import Recommender, RecommendLimits
from server.core.redis_store import RedisStore
from server.core.registry import PRIMARY, VARIANT_B, ModelRegistry
from server.core.reload import BundleWatcher, Reloader, ReloadResult
from server.core.scoring import Limits, Scorer
from server.core.sessions import SessionLimits, SessionStore
from server.gcpause import GcPauseRecorder, freeze_loaded_objects
from server.listeners import bind_public, describe_public, start_admin, start_health_listener
from server.metrics import Metrics, serve_metrics
from server.settings import Settings
from server.transport.admission import Admission
from server.transport.guard import CallGuard
from server.transport.handlers import Handlers
from server.transport.health import Health
from server.transport.inference import SERVICE as INFERENCE
from server.transport.inference import InferenceHandlers, InferenceServicer
from server.transport.servicers import RecommenderServicer
from server.transport.shedding import QueueMonitor, core_counters_since, existing_server_ids
from server.transport.watchdog import Watchdog
from server.warmup import warm_up

log = logging.getLogger(__name__)

RECOMMENDER = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
# The public port's services: Admin is never among them (server.listeners serves it apart).
SERVICE_NAMES = (
    RECOMMENDER,
    INFERENCE,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
# Health is reported for the whole server ("") and for the Recommender service by name.
HEALTH_SERVICES = ("", RECOMMENDER, INFERENCE)
# Admission and shedding apply to scoring; V2's liveness, readiness and metadata calls are
# probes, answered however loaded the server is (as grpc.health.v1 is).
GUARDED = (RECOMMENDER, f"{INFERENCE}/ModelInfer")


def make_impression_log(settings: Settings, metrics: Metrics) -> ImpressionLog:
    """The impression log: Parquet files under --impression-log-dir, Redis Streams at
    --impression-log-redis (the log consumer writes the files), or none (request ids
    and the online A/B counts are kept either way)."""
    limits = LogLimits(
        queue_capacity=settings.impression_log_queue,
        interval_seconds=settings.impression_log_interval_seconds,
    )
    sink: Sink | None = None
    if settings.impression_log_dir is not None:
        from server.core.parquet_sink import ParquetSink, Retention  # noqa: PLC0415 - pyarrow

        retention = Retention(
            settings.impression_log_retention_hours * 3600, settings.impression_log_max_bytes
        )
        sink = ParquetSink(settings.impression_log_dir, retention)
        log.info("impression log: %s (a file per %g s; queue %d)", settings.impression_log_dir,
                 limits.interval_seconds, limits.queue_capacity)  # fmt: skip
    elif settings.impression_log_redis:
        from server.core.redis_log import RedisSink  # noqa: PLC0415

        redis_sink = RedisSink(settings.impression_log_redis, settings.impression_log_redis_maxlen)
        redis_sink.check_persistence()
        sink = redis_sink
        log.info("impression log: %s (XADD every %g s; queue %d)", redis_sink.describe(),
                 limits.interval_seconds, limits.queue_capacity)  # fmt: skip
    return ImpressionLog(sink, limits, metrics).start()


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
        self.impressions = make_impression_log(settings, self.metrics)
        self.metrics.watch_experiment(self.impressions, self._shares)
        self.scorer = Scorer(
            self.registry,
            Limits(max_candidates=settings.max_candidates),
            self.store,
            self.impressions,
        )
        self.recommender = Recommender(
            self.registry,
            self.store,
            RecommendLimits(settings.catalog_limit, settings.retrieval_size),
            Explorer(settings.explore_epsilon, settings.explore_seed),
            self.impressions,
        )
        self.handlers = Handlers(
            registry=self.registry,
            scorer=self.scorer,
            recommender=self.recommender,
            store=self.store,
            reloader=self.reloader,
            metrics=self.metrics,
            impressions=self.impressions,
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
            explain=self.settings.explain,
            scoring_path=self.settings.scoring_path,
        )
        warm_up(model, self.scorer, self.recommender, self.settings.warmup_requests)
        log.info("bundle %s: %s", model.bundle_name, self.recommender.plan(model))
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

    def _shares(self) -> dict[str, float]:
        variants = self.registry.variants()
        return {v.name: v.share for v in variants} if len(variants) > 1 else {PRIMARY: 1.0}

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
        *connection_options(settings),
    ]


def connection_options(settings: Settings) -> list[tuple[str, int]]:
    """Keepalive and connection age: dead peers are found, and long-lived channels reconnect now
    and then so that they spread over replicas (docs/deployment.md, "Connections and load
    balancers")."""
    never = 2**31 - 1  # gRPC's "infinite" for these millisecond arguments

    def ms(seconds: float) -> int:
        return min(never, round(seconds * 1000)) if seconds > 0 else never

    return [
        ("grpc.keepalive_time_ms", ms(settings.keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout_seconds)),
        # Pings only while calls are open (what holds admission slots): with
        # grpc.keepalive_permit_without_calls=1 too, tests/integration/test_overload.py's
        # admitted calls fell under half the capacity in 4 of 4 runs (passed in 2 of 2 without
        # it); why was not found.
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            round(settings.min_client_ping_seconds * 1000),
        ),
        ("grpc.max_connection_age_ms", ms(settings.max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace_seconds)),
    ]


def run(settings: Settings, on_serving: Callable[[], None] = lambda: None) -> None:
    """Runs the server until SIGTERM/SIGINT; `on_serving` runs once it is SERVING (the worker
    supervisor counts it)."""
    asyncio.run(serve(settings, on_serving=on_serving))


async def serve(
    settings: Settings,
    app: App | None = None,
    stop: asyncio.Event | None = None,
    on_serving: Callable[[], None] = lambda: None,
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
        guarded_services=GUARDED,
        measured_services=(RECOMMENDER, INFERENCE),
    )
    server = grpc.aio.server(interceptors=[guard], options=grpc_options(settings))
    # The core's counters belong to the server just created: only now can the monitor read them.
    monitor.core = core_counters_since(before)
    remote_store = not isinstance(app.store, MemoryStore)
    blocking = ThreadPoolExecutor(settings.threads, "store") if remote_store else None
    pb_grpc.add_RecommenderServicer_to_server(RecommenderServicer(app.handlers, blocking), server)
    health = Health(HEALTH_SERVICES)
    await health.set_serving(False)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    inference = InferenceHandlers(
        app.registry, app.handlers.scorer, metrics, settings.inference_model_name,
        ready=lambda: health.statuses.get("") == health_pb2.HealthCheckResponse.SERVING,
    )  # fmt: skip
    v2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(inference, blocking), server
    )
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    loop = asyncio.get_running_loop()
    if _shares_port(settings):
        await loop.run_in_executor(None, app.load_all)
    port = bind_public(server, settings)
    await server.start()
    log.info("listening on %s:%d (%s)", settings.host, port, describe_public(settings))
    admin = await start_admin(settings, app.handlers, metrics)
    probes = await start_health_listener(settings, health, metrics, grpc_options(settings))
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, app.reload_all))
    if settings.metrics_port >= 0:
        serve_metrics(settings.metrics_port, settings.host)
    sampling = asyncio.create_task(monitor.run(), name="queue-monitor")
    if not _shares_port(settings):
        # Loading takes seconds (parity probe, warm-up): keep answering health meanwhile.
        try:
            await loop.run_in_executor(None, app.load_all)
        except BaseException:
            # An unservable bundle at start is one log line (server.__main__), not also a
            # traceback from a grpc.aio server collected after its event loop closed.
            sampling.cancel()
            if admin is not None:
                await admin.stop(0)
            await server.stop(0)
            raise
    await health.set_serving(True)
    watchdog = Watchdog(admission.unary, health.set_serving, settings.stall_seconds, metrics)
    watching = asyncio.create_task(watchdog.run(), name="watchdog")
    log.info("SERVING %s", _describe(app))
    on_serving()
    await stop.wait()
    log.info(
        "shutting down: health NOT_SERVING, letting in-flight RPCs finish (%.1fs grace)",
        settings.grace_seconds,
    )
    app.stop_watching()
    watching.cancel()  # from now on health stays NOT_SERVING
    await health.enter_graceful_shutdown()
    remaining = await _drain(admission, monitor, settings)
    if admin is not None:
        await admin.stop(0)
    if probes is not None:
        await probes.stop(0)
    await server.stop(remaining)
    sampling.cancel()
    if blocking is not None:
        blocking.shutdown(wait=True)
    await loop.run_in_executor(None, app.impressions.close)  # the last partial interval
    log.info("stopped")


def _shares_port(settings: Settings) -> bool:
    """Workers share the port (SO_REUSEPORT), and the kernel hands connections to every
    listener: a worker binds only once its model is loaded, so a replacement for a crashed
    worker never answers UNAVAILABLE meanwhile. A single process binds first and reports
    NOT_SERVING while it loads."""
    return settings.workers > 1


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
