"""Locust users over gRPC: a shopper (TrackEvent, Recommend) and a backend service (Score).

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 60s --host 127.0.0.1:50051

Every RPC is reported to locust's statistics by a client interceptor (name = the RPC, response
time, response size, failure = the gRPC status). Custom options (also as environment variables):
--candidates (LOCUST_CANDIDATES), --catalog (LOCUST_CATALOG), --think-time (LOCUST_THINK_TIME),
--backend-wait (LOCUST_BACKEND_WAIT). This measures closed-loop user behaviour; for a fixed
arrival rate and coordinated-omission-free latency use `python -m loadtest`.
"""

from __future__ import annotations

import functools
import itertools
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# locust first: importing it monkey-patches the standard library for gevent, which
# grpc.experimental.gevent.init_gevent() needs before any grpc object exists.
from locust import User, events, task
from locust.env import Environment
from locust.exception import LocustError

import grpc  # isort: skip
import grpc.experimental.gevent as grpc_gevent  # isort: skip

grpc_gevent.init_gevent()

import numpy as np  # noqa: E402

from loadtest import workload  # noqa: E402
from loadtest.products import load_product_ids  # noqa: E402
from reco.v1 import recommender_pb2 as pb  # noqa: E402
from reco.v1 import recommender_pb2_grpc as pb_grpc  # noqa: E402

RPC_TIMEOUT_S = 5.0
# A shopper session ends (a new session id starts) after this many events.
EVENTS_PER_SESSION = 25


class RpcCallError(Exception):
    """A failed RPC as locust lists it: the status code name and the server's message."""


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--candidates",
        type=int,
        env_var="LOCUST_CANDIDATES",
        default=100,
        help="candidates per Score request sent by the backend user",
    )
    parser.add_argument(
        "--catalog",
        env_var="LOCUST_CATALOG",
        default="artifacts/latest/catalog.csv",
        help="catalog CSV for product ids (absent: PROD0001..PROD0200)",
    )
    parser.add_argument(
        "--think-time",
        env_var="LOCUST_THINK_TIME",
        default="1:4",
        help="shopper think time between actions, MIN:MAX seconds",
    )
    parser.add_argument(
        "--backend-wait",
        env_var="LOCUST_BACKEND_WAIT",
        default="0.05:0.2",
        help="backend user pause between Score calls, MIN:MAX seconds",
    )


def _interval(text: str, option: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    try:
        bounds = (float(low), float(high if sep else low))
    except ValueError:
        raise LocustError(f"{option} must look like MIN:MAX seconds, got {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise LocustError(f"{option} must satisfy 0 <= MIN <= MAX, got {text!r}")
    return bounds


@functools.cache
def _products(catalog: str) -> tuple[str, ...]:
    return load_product_ids(Path(catalog))


def _rpc_name(method: str | bytes) -> str:
    text = method.decode() if isinstance(method, bytes) else method
    return text.rsplit("/", 1)[-1]


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Fires locust's request event for every unary call on the channel."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        """Times the call and reports it, success or failure, under the RPC's name."""
        started = time.perf_counter()
        call = continuation(client_call_details, request)
        response, length, failure = None, 0, None
        try:
            response = call.result()
            length = response.ByteSize()
        except grpc.RpcError as exc:
            failure = RpcCallError(f"{exc.code().name}: {exc.details()}")
        self.environment.events.request.fire(
            request_type="grpc",
            name=_rpc_name(client_call_details.method),
            response_time=(time.perf_counter() - started) * 1e3,
            response_length=length,
            response=response,
            context={},
            exception=failure,
        )
        return call


class GrpcUser(User):
    """A locust user holding one gRPC channel (gevent-driven) to --host HOST:PORT."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise LocustError("pass the server as --host HOST:PORT (e.g. 127.0.0.1:50051)")
        target = self.host.removeprefix("grpc://").removeprefix("http://").rstrip("/")
        options = environment.parsed_options
        self.products = _products(options.catalog if options else "artifacts/latest/catalog.csv")
        self.rng = np.random.default_rng()
        self._channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.RecommenderStub(
            grpc.intercept_channel(self._channel, LocustInterceptor(environment))
        )

    def call(self, method: Callable[..., Any], request: Any) -> Any:
        """Calls an RPC; a failure is already in locust's statistics, so it returns None."""
        try:
            return method(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError:
            return None

    def on_stop(self) -> None:
        """Closes the channel."""
        self._channel.close()


class ShopperUser(GrpcUser):
    """A shopper browsing: views and cart adds (TrackEvent) with Recommend calls between them."""

    weight = 3

    def on_start(self) -> None:
        """Lands on a product page."""
        options = self.environment.parsed_options
        self.think = _interval(options.think_time if options else "1:4", "--think-time")
        self._new_session()

    def wait_time(self) -> float:
        """Think time between actions."""
        return float(self.rng.uniform(*self.think))

    def _new_session(self) -> None:
        self.session_id = f"locust-{uuid.uuid4().hex[:12]}"
        self.event_numbers = itertools.count()
        self._track(pb.EVENT_TYPE_VIEW)

    def _track(self, event_type: pb.EventType) -> None:
        number = next(self.event_numbers)
        if number >= EVENTS_PER_SESSION:
            self._new_session()
            return
        event_id = f"{self.session_id}-{number}"
        request = workload.track_request(
            self.rng, self.products, self.session_id, event_id, event_type
        )
        self.call(self.stub.TrackEvent, request)

    @task(6)
    def view_product(self) -> None:
        """Opens another product page."""
        self._track(pb.EVENT_TYPE_VIEW)

    @task(3)
    def see_recommendations(self) -> None:
        """The page asks what to show this shopper."""
        self.call(self.stub.Recommend, workload.recommend_request(self.session_id))

    @task(1)
    def add_to_cart(self) -> None:
        """Adds a product to the cart; the cart page then shows recommendations."""
        self._track(pb.EVENT_TYPE_ADD_TO_CART)
        self.call(self.stub.Recommend, workload.recommend_request(self.session_id))


class BackendUser(GrpcUser):
    """A backend service ranking a batch of candidates per call (Score)."""

    weight = 1

    def on_start(self) -> None:
        """Reads the batch size and pause from the options."""
        options = self.environment.parsed_options
        self.candidates = int(options.candidates) if options else 100
        self.pause = _interval(options.backend_wait if options else "0.05:0.2", "--backend-wait")
        self.session_id = f"locust-backend-{uuid.uuid4().hex[:12]}"

    def wait_time(self) -> float:
        """Pause between calls."""
        return float(self.rng.uniform(*self.pause))

    @task
    def score(self) -> None:
        """Scores one batch of candidates for a random live-session context."""
        request = workload.score_request(self.rng, self.products, self.candidates, self.session_id)
        self.call(self.stub.Score, request)
