"""Health probe for containers: exits 0 when the local server reports SERVING (grpc.health.v1),
over plaintext, TLS or mTLS like the server's public port."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import SimpleNamespace

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reco.settings import SettingsParser, boolean, number, optional_path, run_cli

PROG = "python -m server.healthcheck"


def build_parser(environ: Mapping[str, str] | None = None) -> SettingsParser:
    """The flags (RECO_HEALTHCHECK_<FLAG> fallbacks); the defaults follow the server's own
    settings in the environment (RECO_PORT, RECO_TLS_CERT), as in its container."""
    env = os.environ if environ is None else environ
    p = SettingsParser(PROG, __doc__ or "", env_prefix="RECO_HEALTHCHECK_")
    p.add("--target", str, f"127.0.0.1:{env.get('RECO_PORT') or '50051'}",
          "host:port of the public listener (the port defaults to RECO_PORT)")  # fmt: skip
    p.add("--timeout", number(positive=True), "2", "seconds")
    p.add("--tls", boolean, "true" if env.get("RECO_TLS_CERT") else "false",
          "connect with TLS (default on when RECO_TLS_CERT is set, as for the server)")  # fmt: skip
    p.add("--ca", optional_path, env.get("RECO_TLS_CERT", ""),
          "PEM roots that signed the server's certificate (default RECO_TLS_CERT: right for a "
          "self-signed certificate)")  # fmt: skip
    p.add("--cert", optional_path, "", "client certificate for an mTLS server")
    p.add("--key", optional_path, "", "private key of --cert")
    p.add("--server-name", str, "",
          "name the server's certificate must carry, when not the target's host")  # fmt: skip
    return p


def _channel(args: SimpleNamespace) -> grpc.Channel:
    if not args.tls:
        return grpc.insecure_channel(args.target)
    client = None
    if args.cert is not None and args.key is not None:
        client = (args.key.read_bytes(), args.cert.read_bytes())
    creds = grpc.ssl_channel_credentials(
        root_certificates=args.ca.read_bytes() if args.ca else None,
        private_key=client[0] if client else None,
        certificate_chain=client[1] if client else None,
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.target, creds, options=options)


def main(argv: list[str] | None = None) -> int:
    """Checks the server's health service once; prints the status (exit 0 SERVING, 1 not, 2 a
    bad setting)."""
    return run_cli(PROG, lambda: _check(argv))


def _check(argv: list[str] | None) -> int:
    args = SimpleNamespace(**build_parser().parse(argv))
    try:
        channel = _channel(args)
    except OSError as exc:
        print(f"{args.target}: cannot read a TLS file: {exc}", file=sys.stderr)
        return 1
    try:
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        print(f"{args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
