"""Start-up checks before anything is loaded: files readable, the runtime directory private,
bundles inside the root, every listener bindable. Each failure is one SettingError line."""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import stat
import tempfile
from dataclasses import replace
from pathlib import Path

from reco import KEY_ENV, KEY_FILE_ENV, SigningKeyError, key_file_is_private, load_key
from reco.settings import SettingError, shown
from server.endpoints import Endpoint, default_admin_endpoint, for_worker, parse_endpoint
from server.settings import ADMIN_OFF, Settings

log = logging.getLogger(__name__)

# A bearer token shorter than this is guessable; `openssl rand -hex 32` gives 64 characters.
MIN_TOKEN_CHARS = 16


def prepare(settings: Settings) -> Settings:
    """Checks everything the settings point at and returns them with the bundle root, the
    runtime directory and the admin address resolved; raises SettingError (one line)."""
    runtime_dir = private_runtime_dir(settings.runtime_dir)
    root = _bundle_root(settings)
    key_notes = _check_key(settings)
    _check_tls(settings)
    admin = admin_endpoint(settings, runtime_dir)
    if admin is not None:
        _check_admin(settings, admin)
    if settings.port != 0:
        check_bindable(settings.host, settings.port, "--port", "--host")
    if settings.metrics_port > 0:
        check_bindable(settings.host, settings.metrics_port, "--metrics-port", "--host")
    if settings.health_port > 0:
        check_bindable(settings.host, settings.health_port, "--health-port", "--host")
    # Logged only once every check passed: a refused start prints its one error line alone.
    for level, note in key_notes:
        log.log(level, "%s", note)
    return replace(
        settings,
        bundle_root=root,
        runtime_dir=runtime_dir,
        admin_address=ADMIN_OFF if admin is None else admin.address,
    )


def private_runtime_dir(configured: Path | None) -> Path:
    """The runtime directory, created 0700 if missing; refused if anyone else could use it."""
    if configured is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = Path(xdg) if xdg and Path(xdg).is_dir() else Path(tempfile.gettempdir())
        configured = base / ("reco-server" if xdg else f"reco-server-{os.getuid()}")
    path = configured.absolute()
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked below: it must be ours and private
    except OSError as exc:
        raise SettingError(f"--runtime-dir {path}: cannot create it ({exc.strerror})") from None
    info = path.lstat()
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or mode & 0o077:
        raise SettingError(
            f"--runtime-dir {path} is not private (a directory owned by uid {os.getuid()} with "
            f"mode 0700; found mode {mode:04o}, owner {info.st_uid}): remove it or choose another"
        )
    return path


def admin_endpoint(settings: Settings, runtime_dir: Path) -> Endpoint | None:
    """Where Admin listens (None = nowhere): the setting, or the default Unix socket."""
    if settings.admin_address == ADMIN_OFF:
        return None
    if not settings.admin_address:
        return default_admin_endpoint(runtime_dir, settings.port)
    try:
        return parse_endpoint(settings.admin_address)
    except ValueError as exc:
        raise SettingError(f"--admin-address {exc}, got {shown(settings.admin_address)}") from None


def _bundle_root(settings: Settings) -> Path:
    if not settings.bundle.exists():
        raise SettingError(f"--bundle {settings.bundle} does not exist (make model builds one)")
    configured = settings.bundle_root or Path(os.path.realpath(settings.bundle)).parent
    root = Path(os.path.realpath(configured))
    if not root.is_dir():
        raise SettingError(f"--bundle-root {configured} is not a directory")
    for flag, bundle in (("--bundle", settings.bundle), ("--ab-bundle", settings.ab_bundle)):
        if bundle is None:
            continue
        real = Path(os.path.realpath(bundle))
        if real == root or not real.is_relative_to(root):
            raise SettingError(f"{flag} {bundle} resolves outside --bundle-root {root}")
    return root


def _check_key(settings: Settings) -> list[tuple[int, str]]:
    """Loads the bundle key to check it; returns what to log about it."""
    try:
        key = load_key(settings.bundle_key_file)
    except SigningKeyError as exc:
        raise SettingError(f"--bundle-key-file: {exc}") from None
    if key is None:
        return [(logging.WARNING,
                 f"bundle signatures are NOT checked (no --bundle-key-file, {KEY_FILE_ENV} or "
                 f"{KEY_ENV}): anyone who can write under the bundle root can make this server "
                 "run their code")]  # fmt: skip
    notes = [(logging.INFO, f"bundles must be signed with key {key.key_id} ({key.source})")]
    path = settings.bundle_key_file or (
        Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None
    )
    if path is not None and not key_file_is_private(path):
        note = f"{path} is open to other users; anyone who reads it can sign bundles"
        notes.append((logging.WARNING, note))
    return notes


def _check_tls(settings: Settings) -> None:
    if settings.tls_cert is None or settings.tls_key is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback: an encrypted key fails here instead of prompting on a terminal.
        context.load_cert_chain(settings.tls_cert, settings.tls_key, password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        raise SettingError(
            f"--tls-cert {settings.tls_cert} / --tls-key {settings.tls_key}: not a PEM "
            f"certificate and its unencrypted private key ({_reason(exc)})"
        ) from None
    for flag, ca in (("--tls-client-ca", settings.tls_client_ca),
                     ("--admin-tls-client-ca", settings.admin_tls_client_ca)):  # fmt: skip
        if ca is None:
            continue
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise SettingError(f"{flag} {ca}: not a PEM CA bundle ({_reason(exc)})") from None


def _check_admin(settings: Settings, admin: Endpoint) -> None:
    if settings.admin_token_file is not None:
        read_token(settings.admin_token_file)
    if not admin.loopback and not (
        settings.tls_cert and (settings.admin_tls_client_ca or settings.admin_token_file)
    ):
        raise SettingError(
            f"--admin-address {admin.address} is reachable from other machines: it needs "
            "--tls-cert/--tls-key and --admin-tls-client-ca or --admin-token-file"
        )
    endpoints = [admin] if settings.workers == 1 else [
        for_worker(admin, i) for i in range(settings.workers)
    ]  # fmt: skip
    for endpoint in endpoints:
        if endpoint.unix_path is not None:
            _check_unix_socket(endpoint.unix_path)
        elif endpoint.port > 65535:
            raise SettingError(
                f"--admin-address {admin.address}: {settings.workers} workers need ports up "
                f"to {endpoint.port}"
            )
        elif endpoint.port != 0:
            check_bindable(endpoint.host, endpoint.port, "--admin-address", "--admin-address")
        elif settings.workers > 1:
            raise SettingError("--admin-address port 0 cannot be used with several workers")


def read_token(path: Path) -> str:
    """The admin bearer token in a file; raises SettingError if it is unusable."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"--admin-token-file {path}: cannot read it ({_reason(exc)})") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise SettingError(
            f"--admin-token-file {path}: the token must be one word of at least "
            f"{MIN_TOKEN_CHARS} characters (e.g. openssl rand -hex 32), found {len(token)}"
        )
    return token


def _check_unix_socket(path: Path) -> None:
    if len(str(path).encode()) > 107:
        raise SettingError(f"--admin-address unix:{path}: the path is longer than 107 bytes")
    if not path.parent.is_dir():
        raise SettingError(f"--admin-address unix:{path}: {path.parent} is not a directory")
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise SettingError(f"--admin-address unix:{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return  # a stale socket of a stopped server; gRPC replaces it
    raise SettingError(f"--admin-address unix:{path} is in use by another server")


def check_bindable(host: str, port: int, port_flag: str, host_flag: str) -> None:
    """Binds (and releases) host:port the way the listener will; raises SettingError naming
    the port's flag when it is taken, the host's when the address is not this machine's."""
    bare = host.removeprefix("[").removesuffix("]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SettingError(f"{host_flag} {host}: cannot resolve it ({exc.strerror})") from None
    failures: list[OSError] = []
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC does: connections in TIME_WAIT from an earlier server do not block it.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise SettingError(
                        f"{port_flag} {port}: {bare}:{port} is already in use"
                    ) from None
                if exc.errno == errno.EACCES:
                    raise SettingError(
                        f"{port_flag} {port}: permission denied (ports below 1024 need privileges)"
                    ) from None
                failures.append(exc)
    if failures and len(failures) == len(infos):
        raise SettingError(
            f"{host_flag} {host}: cannot listen there ({failures[0].strerror})"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
