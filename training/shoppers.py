"""Simulated shoppers that use a live server through its public gRPC API only.

The same hidden process as training/behaviour.py (intent that drifts, engagement from grit,
the position-based click model with the calibrated device and traffic offsets), one session at
a time: each page is a VIEW (plus an image click or a cart add) tracked on the server, then a
Recommend whose slate the shopper clicks with P = examination[slot] x sigmoid(logit +
offsets); a click is reported as RECOMMENDATION_CLICK naming the response's request_id, is the
next page, and sometimes ends in a PURCHASE. The shopper also keeps, per response, the true
P(click | examined) of every catalog product: the truth that off-policy estimates are checked
against.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pandas as pd

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from training.behaviour import (
    CART_BASE,
    CART_PER_GRIT,
    CLICK_MOVES_INTENT,
    CONTINUE_AFTER_CLICK,
    CONTINUE_BASE,
    CONTINUE_PER_GRIT,
    DEVICE_ENGAGEMENT,
    DEVICE_SHARES,
    DEVICES,
    EXAMINATION,
    LANDING_IN_INTENT,
    MAX_VIEWED,
    TRAFFIC_SHARES,
    TRAFFIC_SOURCES,
    VIEW_IN_INTENT,
    Customers,
    PageContext,
    World,
    _browse,
    _drift,
    _fresh_intent,
    click_logit,
    sigmoid,
)
from training.marginals import Offsets

F32 = npt.NDArray[np.float32]
SLOTS = len(EXAMINATION)
# A clicked recommendation is bought this often (purchases exercise the attribution).
PURCHASE_AFTER_CLICK = 0.08
CUSTOMER_POOL = 2_000
# Sessions start this far back: the longest (40 pages of up to ~20 minutes) still ends before
# the server's clock, and the first event stays inside its 1-day window.
SESSION_START_SECONDS = 14 * 3600


@dataclass
class Tally:
    """What the shoppers did and saw."""

    sessions: int = 0
    pages: int = 0
    responses: int = 0
    shown: int = 0
    clicks: int = 0
    purchases: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Shoppers:
    """Drives sessions against `stub`; seeded, so a run repeats given the same server answers."""

    def __init__(self, data_dir: Path, seed: int, session_prefix: str) -> None:
        catalog = pd.read_csv(data_dir / "catalog.csv")
        generation = json.loads((data_dir / "generation.json").read_text())
        self.world = World.from_catalog(catalog)
        self.offsets = Offsets.from_report(generation["calibrated_offsets"])
        self.rng = np.random.default_rng(seed)
        self.customers = Customers.draw(self.world, CUSTOMER_POOL, self.rng)
        self.product_ids = catalog["product_id"].astype(str).tolist()
        self.index = {p: i for i, p in enumerate(self.product_ids)}
        self.prefix = session_prefix
        self.truth: dict[str, F32] = {}  # request id -> P(click | examined) of every product
        self.tally = Tally()
        self._events = 0

    def run(self, stub: pb_grpc.RecommenderStub, sessions: int, first: int = 0) -> Tally:
        """Plays `sessions` whole sessions, numbered from `first`."""
        for number in range(first, first + sessions):
            self._session(stub, number)
        return self.tally

    def _session(self, stub: pb_grpc.RecommenderStub, number: int) -> None:
        rng, world = self.rng, self.world
        sid = f"{self.prefix}-{number}"
        customer = int(self.customers.of_sessions(np.array([number]))[0])
        favourite = self.customers.favourite_category[[customer]]
        device = int(rng.choice(len(DEVICES), p=DEVICE_SHARES))
        traffic = int(rng.choice(len(TRAFFIC_SOURCES), p=TRAFFIC_SHARES))
        grit = float(rng.standard_normal() + DEVICE_ENGAGEMENT[device])
        intent = _fresh_intent(world, favourite, rng)
        start_ms = int(time.time() * 1000) - SESSION_START_SECONDS * 1000
        elapsed, cart, followed = 0, 0, -1
        history: list[int] = []
        common = {
            "session_id": sid,
            "customer_id": f"C{customer:05d}",
            "device_type": DEVICES[device],
            "traffic_source": TRAFFIC_SOURCES[traffic],
        }
        self.tally.sessions += 1
        for page in range(MAX_VIEWED):
            if page > 0:
                intent = _drift(world, intent, favourite, rng)
                if followed >= 0 and rng.random() < CLICK_MOVES_INTENT:
                    intent = world.product_subcategory[[followed]]
            browsed = int(_browse(world, intent, rng, LANDING_IN_INTENT if page == 0
                                  else VIEW_IN_INTENT)[0])  # fmt: skip
            current = followed if followed >= 0 else browsed
            time_on_page = float(
                np.clip(np.rint(np.exp(3.95 + 0.45 * grit + 0.55 * rng.standard_normal())), 3, 1200)
            )
            scroll = float(
                np.clip(np.round(sigmoid(0.25 + 0.9 * grit + 0.8 * rng.standard_normal()), 2), 0, 1)
            )
            image = bool(rng.random() < sigmoid(-0.7 + 0.9 * grit))
            page_seconds = float(
                np.rint(60 * np.exp(0.6 + 0.3 * grit + 0.45 * rng.standard_normal()))
            )
            elapsed += int(max(page_seconds, 6))
            add = bool(rng.random() < sigmoid(CART_BASE + CART_PER_GRIT * grit)) and cart < 10
            now_ms = start_ms + elapsed * 1000
            product = self.product_ids[current]
            self._track(stub, pb.EVENT_TYPE_VIEW, now_ms, common, product,
                        time_on_page_sec=time_on_page, scroll_depth=scroll)  # fmt: skip
            if image:
                self._track(stub, pb.EVENT_TYPE_IMAGE_CLICK, now_ms + 1, common, product)
            if add:
                cart += 1
                self._track(stub, pb.EVENT_TYPE_ADD_TO_CART, now_ms + 2, common, product)
            previous = ([*history[::-1], -1, -1, -1])[:3]
            context = PageContext(
                intent=intent, favourite=favourite, current=np.array([current]),
                previous=np.array([previous]),
                history=np.array([history or [-1]]),
                time_on_page_sec=np.array([time_on_page]), scroll_depth=np.array([scroll]),
                clicked_product_image=np.array([float(image)]),
                products_in_cart=np.array([float(cart)]),
                session_length_mins=np.array([min(max(round(elapsed / 60, 1), 0.1), 600)]),
                products_viewed_count=np.array([float(page + 1)]),
            )  # fmt: skip
            history.append(current)
            followed = self._recommend_and_click(stub, sid, context, device, traffic, now_ms,
                                                 common)  # fmt: skip
            self.tally.pages += 1
            go_on = rng.random() < sigmoid(
                CONTINUE_BASE + CONTINUE_PER_GRIT * grit + CONTINUE_AFTER_CLICK * (followed >= 0)
            )
            if not go_on:
                break

    def _recommend_and_click(self, stub: pb_grpc.RecommenderStub, sid: str,
                             context: PageContext, device: int, traffic: int, now_ms: int,
                             common: dict[str, Any]) -> int:  # fmt: skip
        """One Recommend, the shopper's clicks on it; returns the followed product (or -1)."""
        try:
            response = stub.Recommend(pb.RecommendRequest(session_id=sid, k=SLOTS, min_score=0.0),
                                      timeout=10)  # fmt: skip
        except grpc.RpcError as exc:
            self._error(exc)
            return -1
        slate = np.array([self.index.get(item.product_id, -1) for item in response.items])
        if not len(slate) or (slate < 0).any():
            return -1
        offset = self.offsets.device[device] + self.offsets.traffic[traffic]
        everything = np.arange(self.world.n_products)[None, :]
        relevance = sigmoid(click_logit(self.world, context, everything)[0] + offset)
        self.truth[response.request_id] = relevance.astype(np.float32)
        clicked = (
            self.rng.random(len(slate)) < np.asarray(EXAMINATION)[: len(slate)] * relevance[slate]
        )
        self.tally.responses += 1
        self.tally.shown += len(slate)
        followed = -1
        for slot in np.flatnonzero(clicked).tolist():
            product = self.product_ids[int(slate[slot])]
            self._track(stub, pb.EVENT_TYPE_RECOMMENDATION_CLICK, now_ms + 10 + slot, common,
                        product, request_id=response.request_id)  # fmt: skip
            self.tally.clicks += 1
            if followed < 0:
                followed = int(slate[slot])
            if self.rng.random() < PURCHASE_AFTER_CLICK:
                self._track(stub, pb.EVENT_TYPE_PURCHASE, now_ms + 20 + slot, common, product,
                            request_id=response.request_id)  # fmt: skip
                self.tally.purchases += 1
        return followed

    def _track(self, stub: pb_grpc.RecommenderStub, kind: Any, at_ms: int,
               common: dict[str, Any], product: str, **fields: Any) -> None:  # fmt: skip
        self._events += 1
        event = pb.Event(event_id=f"{common['session_id']}-e{self._events}", type=kind,
                         product_id=product, **common, **fields)  # fmt: skip
        event.client_timestamp.FromMilliseconds(at_ms)
        try:
            stub.TrackEvent(pb.TrackEventRequest(event=event), timeout=10)
        except grpc.RpcError as exc:
            self._error(exc)

    def _error(self, exc: grpc.RpcError) -> None:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else ""
        key = f"{code}: {(details or '').split(',')[0][:80]}"
        self.tally.errors[key] = self.tally.errors.get(key, 0) + 1
