"""Bare grpc.aio servers that `loadtest.serverbench --ceiling` measures this server against.

    python -m server.ceiling --mode echo|model --bundle DIR --host H --port P [...]

On Recommender/Score, with no deserialiser or serialiser (raw bytes in and out):
- echo: answers with the request's own bytes (the transport floor);
- model: parses the ScoreRequest, scores its `features` matrix with the bundle's model.so in
  one call and returns a ScoreResponse holding only the scores (what any Python gRPC model
  server must at least do: the ceiling).
Both serve the health service (SERVING at once) and take the flags a benchmark's server
command gets (--metrics-port and --backend are accepted and ignored).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reco import LIBRARY_FILE, NativeLibrary, read_manifest
from reco.settings import SettingsParser, choice, integer, required_path, run_cli
from reco.v1 import recommender_pb2 as pb

SERVICE = "reco.v1.Recommender"
Handler = Callable[[bytes, grpc.aio.ServicerContext], object]


def model_handler(bundle: Path) -> Handler:
    """Score: parse, one call into model.so, serialise the scores."""
    library = NativeLibrary(bundle / LIBRARY_FILE, read_manifest(bundle)["files"][LIBRARY_FILE])
    predict = library.predict_unchecked
    parse = pb.ScoreRequest.FromString

    async def score(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        features = parse(request).features
        rows = np.frombuffer(features.data, dtype="<f4").reshape(features.rows, features.cols)
        return pb.ScoreResponse(scores=predict(rows).tolist()).SerializeToString()

    return score


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Score: the request's bytes, untouched."""
    return request


async def serve(handler: Handler, address: str) -> None:
    server = grpc.aio.server()
    methods = {"Score": grpc.unary_unary_rpc_method_handler(handler)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    checker = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(address)
    await server.start()
    for name in ("", SERVICE):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> int:
    parser = SettingsParser("python -m server.ceiling", __doc__ or "", env_prefix="RECO_CEILING_")
    parser.add("--mode", choice("echo", "model"), "model", "what Score does")
    parser.add("--bundle", required_path, "artifacts/latest", "the bundle whose model.so scores")
    parser.add("--host", str, "127.0.0.1", "listen address")
    parser.add("--port", integer(1, 65535), "50061", "gRPC port")
    parser.add("--metrics-port", str, "-1", "ignored (benchmark servers all get it)")
    parser.add("--backend", str, "auto", "ignored (benchmark servers all get it)")
    args = parser.parse()
    logging.basicConfig(level=logging.INFO)
    handler = model_handler(args["bundle"]) if args["mode"] == "model" else echo
    asyncio.run(serve(handler, f"{args['host']}:{args['port']}"))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m server.ceiling", main))
