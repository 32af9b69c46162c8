"""Demo client: a camping-themed Score, then a live session told event by event (run: make demo).

It talks to the server only over gRPC, as any client would; product names come from the
bundle's catalog.csv. With --start-server it starts `python -m server` on a free port first.
"""

from __future__ import annotations

import csv
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import grpc

from loadtest.probe import wait_for_serving
from loadtest.server_process import ManagedServer, ServerSpec
from reco.settings import SettingsParser, boolean, required_path, run_cli
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
E = pb.EventType


def load_catalog(path: Path) -> dict[str, dict[str, str]]:
    """product_id -> catalog row."""
    with path.open() as handle:
        return {row["product_id"]: row for row in csv.DictReader(handle)}


def by_name(catalog: dict[str, dict[str, str]], name: str) -> str:
    """The id of the first product with this name."""
    return next(pid for pid, row in catalog.items() if row["name"] == name)


def score_demo(stub: pb_grpc.RecommenderStub, catalog: dict[str, dict[str, str]]) -> None:
    """One Score call: a shopper on Hiking Boots with a Tent in view, twelve candidates."""
    boots, tent = by_name(catalog, "Hiking Boots"), by_name(catalog, "Tent")
    names = [
        "Headlamp",
        "Sleeping Pad",
        "Camp Stove",
        "Winter Jacket",
        "Laptop",
        "Bike Helmet",
        "Sleeping Bag",
        "Water Filter",
        "Yoga Mat",
        "Coffee Maker",
        "Trekking Poles",
        "Mouse",
    ]
    candidates = [
        by_name(catalog, n) for n in names if any(r["name"] == n for r in catalog.values())
    ]
    request = pb.ScoreRequest(
        context=pb.SessionContext(
            session_id="demo-score",
            current_product_id=boots,
            previous_product_ids=[tent],
            device_type="Desktop",
            traffic_source="Direct",
            time_on_page_sec=95,
            scroll_depth=0.8,
            products_viewed_count=4,
            session_length_mins=12,
            products_in_cart=0,
        ),
        candidates=[pb.Candidate(product_id=p) for p in candidates],
        min_score=0.0,
    )
    started = time.perf_counter()
    response = stub.Score(request)
    elapsed_us = (time.perf_counter() - started) * 1e6
    print(f"\nScore: on Hiking Boots after viewing a Tent, {len(candidates)} candidates")
    print(
        f"  model {response.model_version} ({response.backend}); "
        f"server {response.server_time_us} us, "
        f"round trip {elapsed_us:.0f} us"
    )
    print(f"  {'rank':>4}  {'click prob.':>11}  product")
    for item in response.ranked:
        row = catalog[item.product_id]
        mark = "  <- above the 0.7 threshold" if item.score >= 0.7 else ""
        print(f"  {item.rank:>4}  {item.score:>11.3f}  {row['name']} ({row['subcategory']}){mark}")


def story_demo(stub: pb_grpc.RecommenderStub, catalog: dict[str, dict[str, str]]) -> None:
    """The shopper's story, with the recommendations after each event."""
    session = f"demo-{uuid.uuid4().hex[:8]}"
    steps = [
        ("views Hiking Boots", E.EVENT_TYPE_VIEW, "Hiking Boots", {}),
        (
            "scrolls and looks closely",
            E.EVENT_TYPE_SCROLL,
            "",
            {"scroll_depth": 0.8, "time_on_page_sec": 75},
        ),
        ("adds a Tent to the cart", E.EVENT_TYPE_ADD_TO_CART, "Tent", {}),
        ("views a Sleeping Bag", E.EVENT_TYPE_VIEW, "Sleeping Bag", {}),
        (
            "clicks its pictures",
            E.EVENT_TYPE_IMAGE_CLICK,
            "Sleeping Bag",
            {"time_on_page_sec": 60, "scroll_depth": 0.7},
        ),
        ("changes course: views a Laptop", E.EVENT_TYPE_VIEW, "Laptop", {}),
        (
            "reads the whole page",
            E.EVENT_TYPE_SCROLL,
            "",
            {"scroll_depth": 0.9, "time_on_page_sec": 120},
        ),
    ]
    print(f"\nA live session ({session}): Recommend after each event (k=3, threshold 0.7)")
    show(stub.Recommend(pb.RecommendRequest(session_id=session, k=3)), "before any event")
    # The story happened over the last minutes: the server refuses event times ahead of its clock.
    clock_ms = int(time.time() * 1000) - len(steps) * 40_000
    for n, (what, kind, name, fields) in enumerate(steps):
        event = pb.Event(
            event_id=f"{session}-{n}",
            session_id=session,
            type=kind,
            product_id=by_name(catalog, name) if name else "",
            device_type="Desktop",
            traffic_source="Direct",
            **fields,
        )  # type: ignore[arg-type]
        event.client_timestamp.FromMilliseconds(clock_ms + n * 40_000)
        stub.TrackEvent(pb.TrackEventRequest(event=event))
        show(stub.Recommend(pb.RecommendRequest(session_id=session, k=3)), f"shopper {what}")
    stub.ForgetSession(pb.ForgetSessionRequest(session_id=session))


def show(response: pb.RecommendResponse, title: str) -> None:
    """One Recommend answer as a few readable lines."""
    flag = " [cold start: popular products]" if response.cold_start else ""
    print(f"\n  {title}{flag}  ({response.server_time_us} us in the server)")
    if not response.items:
        print("     nothing is confident enough to show yet")
    for item in response.items:
        reasons = "; ".join(item.reasons)
        print(f"     {item.score:.2f}  {item.name:<26} {item.subcategory:<16} {reasons}")


@contextmanager
def server_for(args: SimpleNamespace) -> Iterator[str]:
    """The target to talk to: the given one, or a server started for the demo."""
    if not args.start_server:
        wait_for_serving(args.target, timeout_s=10)
        yield args.target
        return
    log = ROOT / "reports" / "demo-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with ManagedServer(ServerSpec(bundle=args.bundle), log) as running:
        yield running.target


def main() -> int:
    parser = SettingsParser("scripts/demo.py", __doc__ or "", env_prefix="RECO_DEMO_")
    parser.add("--target", str, "127.0.0.1:50051", "a running server")
    parser.add("--start-server", boolean, "false", "start one for the demo")
    parser.add("--bundle", required_path, str(ROOT / "artifacts" / "latest"), "its bundle")
    args = SimpleNamespace(**parser.parse())
    catalog = load_catalog(args.bundle / "catalog.csv")
    with server_for(args) as target, grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        score_demo(stub, catalog)
        story_demo(stub, catalog)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("scripts/demo.py", main))
