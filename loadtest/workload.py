"""What a load test sends: scenario kinds, the mix between them, and the gRPC request builders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reco.v1 import recommender_pb2 as pb

# Request kinds a scenario mixes. The order is part of the result files (Samples.kind indexes it).
SCORE = "score"  # Score with a batch of candidates
SCORE_BAD = "score-bad"  # Score whose last candidate has an empty product_id: INVALID_ARGUMENT
RECOMMEND_SESSION = "recommend-session"  # Recommend for a session tracked by this run
TRACK = "track"  # TrackEvent: a view or a cart add in one of this run's sessions
KINDS: tuple[str, ...] = (SCORE, SCORE_BAD, RECOMMEND_SESSION, TRACK)
SESSION_KINDS = frozenset({RECOMMEND_SESSION, TRACK})

DEVICE_TYPES = ("Desktop", "Mobile", "Tablet")
TRAFFIC_SOURCES = ("Direct", "Email", "Paid", "Organic", "Social")
# A shopper's events: mostly views, some cart adds.
CART_ADD_SHARE = 0.2


@dataclass(frozen=True)
class Mix:
    """Relative weights of the request kinds of a scenario."""

    weights: dict[str, float]

    @classmethod
    def parse(cls, text: str) -> Mix:
        """Parses "score=8,recommend-session=1,track=1" (a bare kind means weight 1)."""
        weights: dict[str, float] = {}
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            name, _, weight_text = entry.partition("=")
            name = name.strip()
            if name not in KINDS:
                raise ValueError(
                    f"scenario: unknown request kind {name!r} in {text!r} "
                    f"(known: {', '.join(KINDS)})"
                )
            if name in weights:
                raise ValueError(f"scenario: {name!r} appears twice in {text!r}")
            try:
                weight = float(weight_text) if weight_text.strip() else 1.0
            except ValueError:
                raise ValueError(
                    f"scenario: weight of {name!r} must be a number, got {weight_text!r}"
                ) from None
            if not np.isfinite(weight) or weight <= 0:
                raise ValueError(f"scenario: weight of {name!r} must be > 0, got {weight_text!r}")
            weights[name] = weight
        if not weights:
            raise ValueError(f"scenario: no request kind in {text!r} (known: {', '.join(KINDS)})")
        return cls(weights)

    def __str__(self) -> str:
        return ",".join(f"{name}={weight:g}" for name, weight in self.weights.items())

    @property
    def uses_sessions(self) -> bool:
        """Whether the scenario needs sessions tracked on the server before it starts."""
        return bool(SESSION_KINDS & self.weights.keys())

    def draw(self, rng: np.random.Generator, size: int) -> npt.NDArray[np.int8]:
        """`size` kind indices (into KINDS), drawn in proportion to the weights."""
        names = list(self.weights)
        p = np.array([self.weights[n] for n in names], dtype=np.float64)
        picks = rng.choice(len(names), size=size, p=p / p.sum())
        lookup = np.array([KINDS.index(n) for n in names], dtype=np.int8)
        return lookup[picks]


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def session_context(
    rng: np.random.Generator, products: Sequence[str], session_id: str
) -> pb.SessionContext:
    """A plausible live-session context: a product on screen, recent views, engagement."""
    recent = [_pick(rng, products) for _ in range(int(rng.integers(0, 4)))]
    return pb.SessionContext(
        session_id=session_id,
        current_product_id=_pick(rng, products),
        previous_product_ids=recent,
        products_in_cart=int(rng.integers(0, 4)),
        device_type=_pick(rng, DEVICE_TYPES),
        traffic_source=_pick(rng, TRAFFIC_SOURCES),
        time_on_page_sec=float(rng.uniform(2.0, 180.0)),
        scroll_depth=float(rng.uniform(0.0, 1.0)),
        clicked_product_image=bool(rng.random() < 0.3),
        session_length_mins=float(rng.uniform(0.5, 30.0)),
        products_viewed_count=len(recent) + 1,
    )


def candidate_ids(rng: np.random.Generator, products: Sequence[str], count: int) -> list[str]:
    """`count` candidate ids: distinct while the catalog has enough, else drawn with repeats."""
    if count < 1:
        raise ValueError(f"candidates must be >= 1, got {count}")
    picks = rng.choice(len(products), size=count, replace=count > len(products))
    return [products[int(i)] for i in picks]


def score_request(
    rng: np.random.Generator,
    products: Sequence[str],
    candidates: int,
    session_id: str,
    top_k: int = 10,
) -> pb.ScoreRequest:
    """A Score call as a backend would send it: one context, a batch of id-only candidates."""
    return pb.ScoreRequest(
        context=session_context(rng, products, session_id),
        candidates=[pb.Candidate(product_id=p) for p in candidate_ids(rng, products, candidates)],
        top_k=top_k,
    )


def bad_score_request(
    rng: np.random.Generator, products: Sequence[str], candidates: int, session_id: str
) -> pb.ScoreRequest:
    """A Score call the server must reject (INVALID_ARGUMENT): its last candidate has no id."""
    request = score_request(rng, products, candidates, session_id)
    request.candidates[-1].product_id = ""
    return request


def track_request(
    rng: np.random.Generator,
    products: Sequence[str],
    session_id: str,
    event_id: str,
    event_type: pb.EventType | None = None,
) -> pb.TrackEventRequest:
    """A TrackEvent call: a view (or, at CART_ADD_SHARE, a cart add) of a random product."""
    if event_type is None:
        event_type = (
            pb.EVENT_TYPE_ADD_TO_CART if rng.random() < CART_ADD_SHARE else pb.EVENT_TYPE_VIEW
        )
    return pb.TrackEventRequest(
        event=pb.Event(
            event_id=event_id,
            session_id=session_id,
            type=event_type,
            product_id=_pick(rng, products),
            time_on_page_sec=float(rng.uniform(2.0, 180.0)),
            scroll_depth=float(rng.uniform(0.0, 1.0)),
            device_type=_pick(rng, DEVICE_TYPES),
            traffic_source=_pick(rng, TRAFFIC_SOURCES),
        )
    )


def recommend_request(session_id: str, k: int = 3) -> pb.RecommendRequest:
    """A Recommend call for a tracked session."""
    return pb.RecommendRequest(session_id=session_id, k=k)
