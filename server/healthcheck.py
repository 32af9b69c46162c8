"""Health probe for containers: exits 0 when the local server reports SERVING (grpc.health.v1),
over plaintext, TLS or mTLS like the server's public port."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def build_parser() -> argparse.ArgumentParser:
    """The flags; each falls back to the environment variable in brackets."""
    parser = argparse.ArgumentParser(prog="python -m server.healthcheck", description=__doc__)
    parser.add_argument(
        "--target",
        default=f"127.0.0.1:{os.environ.get('RECO_PORT', '50051')}",
        help="host:port of the public listener [RECO_PORT for the port]",
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=_env("RECO_TLS_CERT") is not None,
        help="connect with TLS (default: on when RECO_TLS_CERT is set, as for the server)",
    )
    parser.add_argument(
        "--ca",
        type=Path,
        default=_env("RECO_HEALTHCHECK_CA") or _env("RECO_TLS_CERT"),
        help="PEM roots that signed the server's certificate [RECO_HEALTHCHECK_CA, else "
        "RECO_TLS_CERT: right for a self-signed certificate]",
    )
    parser.add_argument(
        "--cert",
        type=Path,
        default=_env("RECO_HEALTHCHECK_CERT"),
        help="client certificate for an mTLS server [RECO_HEALTHCHECK_CERT]",
    )
    parser.add_argument(
        "--key",
        type=Path,
        default=_env("RECO_HEALTHCHECK_KEY"),
        help="private key of --cert [RECO_HEALTHCHECK_KEY]",
    )
    parser.add_argument(
        "--server-name",
        default=_env("RECO_HEALTHCHECK_SERVER_NAME"),
        help="name the server's certificate must carry, when not the target's host "
        "[RECO_HEALTHCHECK_SERVER_NAME]",
    )
    return parser


def _channel(args: argparse.Namespace) -> grpc.Channel:
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
    """Checks the server's health service once; prints the status."""
    args = build_parser().parse_args(argv)
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
