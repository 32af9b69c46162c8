"""The listeners: the public port (plaintext, TLS or mTLS) and the admin listener apart from
it (a Unix socket or loopback by default, optionally a bearer token or mTLS)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reco.settings import SettingError
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from server.endpoints import Endpoint, parse_endpoint
from server.metrics import Metrics
from server.preflight import read_token
from server.settings import ADMIN_OFF, Settings
from server.transport.admin_auth import TokenCheck, TokenInterceptor
from server.transport.admission import Admission
from server.transport.guard import CallGuard
from server.transport.handlers import Handlers
from server.transport.servicers import AdminServicer
from server.transport.shedding import QueueMonitor

log = logging.getLogger(__name__)

ADMIN = pb.DESCRIPTOR.services_by_name["Admin"].full_name
ADMIN_SERVICE_NAMES = (ADMIN, reflection.SERVICE_NAME)
LIVENESS_SERVICE = "liveness"  # a health service name for liveness probes (--health-port)
# A ReloadModelRequest is a few hundred bytes; nothing shares the admin socket.
ADMIN_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024), ("grpc.so_reuseport", 0)]


def credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS with this certificate; with a client CA, clients must present a certificate it
    signed (mTLS)."""
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def bind(server: Any, address: str, creds: grpc.ServerCredentials | None, flag: str) -> int:
    """Adds a port to a grpc or grpc.aio server; a failure is a SettingError naming `flag`."""
    try:
        if creds is None:
            port: int = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, creds)
    except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
        raise SettingError(f"{flag}: cannot listen on {address} ({exc})") from None
    return port


def bind_public(server: Any, settings: Settings) -> int:
    """The public port, with TLS when --tls-cert is set; returns the bound port number."""
    creds = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        creds = credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    return bind(server, settings.address, creds, "--port")


def describe_public(settings: Settings) -> str:
    """plaintext, TLS or mTLS, for the start-up log line."""
    if settings.tls_client_ca is not None:
        return "mTLS"
    return "TLS" if settings.tls else "plaintext"


def _admin_endpoint(settings: Settings) -> Endpoint | None:
    if settings.admin_address in ("", ADMIN_OFF):  # "" only where preflight did not run
        return None
    return parse_endpoint(settings.admin_address)


def _admin_credentials(settings: Settings, endpoint: Endpoint) -> grpc.ServerCredentials | None:
    """TLS on a TCP admin listener whenever the server has a certificate, and mTLS with
    --admin-tls-client-ca; a Unix socket is protected by its file mode unless mTLS is asked."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    if endpoint.unix_path is not None and settings.admin_tls_client_ca is None:
        return None
    return credentials(settings.tls_cert, settings.tls_key, settings.admin_tls_client_ca)


def _finish_admin(settings: Settings, endpoint: Endpoint, port: int) -> None:
    if endpoint.unix_path is not None:
        # gRPC creates the socket with the umask's mode; the runtime directory is 0700 anyway.
        endpoint.unix_path.chmod(0o600)
    auth = [
        "TLS" if _admin_credentials(settings, endpoint) else "",
        "client certificates" if settings.admin_tls_client_ca else "",
        "bearer token" if settings.admin_token_file else "",
    ]
    where = endpoint.address if endpoint.unix_path else f"{endpoint.host}:{port}"
    if endpoint.unix_path is not None:
        auth.append("socket mode 0600")
    described = ", ".join(a for a in auth if a) or "loopback only, no credentials"
    log.info("admin listening on %s (%s)", where, described)


def side_guard(metrics: Metrics, measured_services: tuple[str, ...]) -> CallGuard:
    """The CallGuard of a listener beside the public port: calls decoded safely and answered
    through the error table, never admitted against (nor shed by) the public port's budgets."""
    return CallGuard(
        Admission(1, 1, metrics),
        QueueMonitor(None, 0.0, metrics),
        metrics,
        guarded_services=(),
        measured_services=measured_services,
    )


async def start_health_listener(
    settings: Settings, health: Any, metrics: Metrics, options: list[tuple[str, Any]]
) -> grpc.aio.Server | None:
    """With --health-port, a plaintext listener serving only grpc.health.v1 (the same statuses
    as the public port), for probes that cannot speak TLS, such as Kubernetes' native gRPC
    probes. It carries no data and no operator action; its calls pass a CallGuard of their own
    (decoded safely, never admitted against the public budgets)."""
    if settings.health_port < 0:
        return None
    guard = side_guard(metrics, measured_services=())
    server = grpc.aio.server(interceptors=[guard], options=options)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    # SERVING whenever the event loop can answer, whatever the other statuses say: a liveness
    # probe on it restarts a wedged process, never one that is only busy or waiting on Redis.
    await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    address = settings.address_on(settings.health_port)
    bind(server, address, None, "--health-port")
    await server.start()
    log.info("health listening on %s (plaintext, grpc.health.v1 only)", address)
    return server


async def start_admin(
    settings: Settings, handlers: Handlers, metrics: Metrics
) -> grpc.aio.Server | None:
    """Starts reco.v1.Admin (and reflection for it) on its own grpc.aio server, or None when
    --admin-address is none. Its calls pass the token check first, then a CallGuard of their
    own: decoded safely, answered through the error table and counted, never admitted against
    (nor shed by) the public port's budgets."""
    endpoint = _admin_endpoint(settings)
    if endpoint is None:
        return None
    guard = side_guard(metrics, measured_services=(ADMIN,))
    interceptors: list[grpc.aio.ServerInterceptor] = [guard]
    if settings.admin_token_file is not None:
        token = TokenInterceptor(TokenCheck(read_token(settings.admin_token_file)))
        interceptors.insert(0, token)
    server = grpc.aio.server(interceptors=interceptors, options=ADMIN_OPTIONS)
    pb_grpc.add_AdminServicer_to_server(AdminServicer(handlers), server)
    reflection.enable_server_reflection(ADMIN_SERVICE_NAMES, server)
    port = bind(server, endpoint.address, _admin_credentials(settings, endpoint), "--admin-address")
    await server.start()
    _finish_admin(settings, endpoint, port)
    return server
