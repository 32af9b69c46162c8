"""In-process stage costs of Score and Recommend: the server's own code, without gRPC or network.

    python -m server.stagebench [--bundle artifacts/latest] [--requests 3000]
                                [--scoring-path auto|native|python]

Runs the real handlers (decode, features, predict, rank, encode) on fresh protobuf requests in
this process and prints the median per stage, back to back and with an idle gap before each
request. The gap shows what this machine charges for waking up to a request: the live server
is idle between requests unless it is saturated, so its server_time_us sits between the two.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from reco.settings import SettingsParser, choice, integer, required_path, run_cli
from reco.v1 import recommender_pb2 as pb
from server.app import App
from server.core.recommend import RecommendQuery
from server.core.sessions import Event, EventType
from server.metrics import Metrics
from server.settings import SCORING_PATHS, parse_settings

GAPS_MS = (0.0, 0.8)
ROUNDS = 5  # every (call, gap) cell runs once per round, cells interleaved; medians over rounds


class StageRecorder(Metrics):
    """Metrics that keep every stage time (in a private registry, beside nothing else)."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        self.stages: dict[str, list[float]] = {}

    def observe_stages(self, rpc: str, seconds: Mapping[str, float]) -> None:
        for stage, value in seconds.items():
            self.stages.setdefault(stage, []).append(value)


def timed(
    recorder: StageRecorder, run: Callable[[Any], Any], requests: list[Any], gap_ms: float
) -> dict[str, float]:
    """Median microseconds per stage (and in total) over `requests`."""
    recorder.stages = {}
    totals = []
    for request in requests:
        if gap_ms:
            time.sleep(gap_ms / 1000)
        start = time.perf_counter()
        run(request)
        totals.append(time.perf_counter() - start)
    medians = {stage: float(np.median(v)) * 1e6 for stage, v in recorder.stages.items()}
    medians["total"] = float(np.median(totals)) * 1e6
    return medians


def main() -> int:
    parser = SettingsParser("python -m server.stagebench", __doc__ or "", env_prefix="RECO_BENCH_")
    parser.add("--bundle", required_path, "artifacts/latest", "model bundle to load")
    parser.add("--requests", integer(10), "3000", "requests per stage series")
    parser.add("--scoring-path", choice(*SCORING_PATHS), "auto", "the server's --scoring-path")
    args = SimpleNamespace(**parser.parse())
    recorder = StageRecorder()
    settings = ["--bundle", str(args.bundle), "--watch-seconds", "0"]
    app = App(parse_settings([*settings, "--scoring-path", args.scoring_path]), recorder)
    app.load_all()
    model = app.registry.variants()[0].model
    ids = model.catalog.product_ids.tolist()
    rng = np.random.default_rng(7)
    context = pb.SessionContext(
        current_product_id=ids[0], previous_product_ids=ids[1:3], device_type="Desktop",
        traffic_source="Direct", time_on_page_sec=80, scroll_depth=0.7, products_in_cart=1,
        session_length_mins=12, products_viewed_count=4,
    )  # fmt: skip

    def score_request(packed: bool) -> bytes:
        picked = [ids[i] for i in rng.choice(len(ids), size=100, replace=False)]
        if packed:
            return pb.ScoreRequest(
                context=context, candidate_ids=picked, top_k=10
            ).SerializeToString()
        candidates = [pb.Candidate(product_id=p) for p in picked]
        return pb.ScoreRequest(context=context, candidates=candidates, top_k=10).SerializeToString()

    for n, (kind, product) in enumerate(
        [(EventType.VIEW, ids[0]), (EventType.ADD_TO_CART, ids[1]), (EventType.VIEW, ids[2])]
    ):
        app.store.track(Event(f"e{n}", "bench", kind, 1_767_225_600_000 + n * 30_000, product,
                              device_type="Desktop", traffic_source="Direct",
                              time_on_page_sec=60.0, scroll_depth=0.7))  # fmt: skip
    handlers = app.handlers
    # The same server with the impression log on (its writer thread running), for the cost
    # of recording a response on the request path; its stage times go to the same recorder.
    logged_dir = tempfile.mkdtemp(prefix="reco-stagebench-log-")
    logged = App(parse_settings(["--bundle", str(args.bundle), "--watch-seconds", "0",
                                 "--impression-log-dir", logged_dir]), recorder)  # fmt: skip
    logged.load_all()
    logged.store = app.store
    logged.recommender.store = app.store
    series: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
        "Score, 100 Candidate messages": (
            lambda raw: handlers.score(pb.ScoreRequest.FromString(raw), None),
            [score_request(False) for _ in range(args.requests)],
        ),
        "Score, 100 candidate_ids": (
            lambda raw: handlers.score(pb.ScoreRequest.FromString(raw), None),
            [score_request(True) for _ in range(args.requests)],
        ),
        f"Recommend, whole catalog ({len(ids)} products)": (
            lambda request: handlers.recommend(request, None),
            [pb.RecommendRequest(session_id="bench", k=3)] * args.requests,
        ),
        f"Recommend, whole catalog ({len(ids)} products), impression log on": (
            lambda request: logged.handlers.recommend(request, None),
            [pb.RecommendRequest(session_id="bench", k=3)] * args.requests,
        ),
    }
    command = " ".join(["python -m server.stagebench", *sys.argv[1:]])
    print(
        f"`{command}`: model {model.version} ({model.feature_set} set, {model.backend.name}, "
        f"{model.scoring_path} scoring path), "
        f"load average {os.getloadavg()[0]:.2f}; medians in us\n"
    )
    cells = [(label, gap) for label in series for gap in GAPS_MS]
    rounds: dict[tuple[str, float], list[dict[str, float]]] = {cell: [] for cell in cells}
    for _ in range(ROUNDS):
        for label, gap in cells:
            run, requests = series[label]
            rounds[(label, gap)].append(
                timed(recorder, run, requests[: args.requests // ROUNDS], gap)
            )
    print("| call | idle gap | first stage | features | predict | rank | encode | total |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, gap in cells:
        runs = rounds[(label, gap)]
        m = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
        first = m.get("decode", m.get("retrieval", 0.0))
        values = [first, m["features"], m["predict"], m["rank"], m["encode"], m["total"]]
        print(f"| {label} | {gap:g} ms | " + " | ".join(f"{v:.0f}" for v in values) + " |")
    print("\nfirst stage: decode for Score, retrieval (session read, candidates) for Recommend")
    logged.impressions.close()
    print(
        f"\nrecording one Recommend response in the impression log (request id, record, "
        f"queue), on the request path: {record_cost(logged):.2f} us (median of 7 x 20,000)"
    )
    return 0


class DiscardSink:
    """A sink that writes nothing (record_cost measures the request path, not the writer)."""

    def write(self, kind: str, records: Sequence[Any]) -> str:
        """Discards the batch."""
        del kind, records
        return ""

    def prune(self) -> int:
        """Nothing to prune."""
        return 0


def record_cost(app: App) -> float:
    """Microseconds per Recommender._log call on a served Recommend result: records queue as
    in the server, and a sink that discards them drains the queue between runs."""
    app.impressions.sink = DiscardSink()
    recommender = app.recommender
    model, variant = app.registry.select("bench")
    state = app.store.get("bench")
    assert state is not None
    context = state.to_context()
    query = RecommendQuery(session_id="bench", k=3)
    result = recommender.recommend_on(model, variant, query, context)
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(20_000):
            recommender._log(result, model, "bench", context)
        runs.append((time.perf_counter() - start) / 20_000 * 1e6)
        app.impressions.flush()  # the writer is stopped: drain what queued
    return float(np.median(runs))


if __name__ == "__main__":
    sys.exit(run_cli("python -m server.stagebench", main))
