"""Retrieval recall on held-out page views: what the retrieved candidates miss of scoring all.

    python -m server.recallbench --bundle B --data DIR [--sessions 200]
                                 [--retrieval-sizes 300,1000] [--mixes 0.5/0.3/0.2]

For up to --sessions of the bundle's held-out sessions (the session ids of its
predictions.csv, the test rows), one page view each (seeded), the bench replays the page's
context from DIR/impressions.csv (the product on screen, the ones before it, the numeric
fields, the decayed view history of the session's earlier pages) and asks the same
Recommender twice: exhaustively (catalog_limit above the catalog: every eligible product
scored) and with retrieval (catalog_limit 0, each retrieval size and source mix). It prints,
per size and mix, the mean share of the exhaustive top-10 that the retrieved candidates
contain (recall), the share of the served top-10 that is the exhaustive one, and the median
microseconds of retrieval alone and of the whole recommend_on call.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from reco import SessionContext, ViewHistory
from reco.settings import (
    SettingError,
    SettingsParser,
    comma_list,
    integer,
    required_path,
    run_cli,
)
from server.app import App
from server.core.memory_store import MemoryStore
from server.core.model import LoadedModel
from server.core.recommend import Recommender, RecommendLimits, RecommendQuery
from server.core.registry import ModelRegistry
from server.core.retrieval import RetrievalMix
from server.settings import parse_settings

TOP = 10
PREDICTIONS_FILE = "predictions.csv"
IMPRESSIONS_FILE = "impressions.csv"


@dataclass(frozen=True)
class RecallRow:
    """One (retrieval size, mix) line of the table."""

    size: int
    mix: RetrievalMix
    recall: float
    served: float
    retrieval_us: float
    recommend_us: float


def held_out_sessions(bundle: Path) -> set[str]:
    """The session ids of the bundle's test rows (its predictions.csv)."""
    path = bundle / PREDICTIONS_FILE
    if not path.exists():
        raise SettingError(f"--bundle: {bundle.name} has no {PREDICTIONS_FILE} (held-out rows)")
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["session_id"] for row in csv.DictReader(handle)}


def _number(text: str) -> float | None:
    return float(text) if text not in ("", "nan", "NaN") else None


def page_contexts(impressions: Path, sessions: set[str], limit: int, skip: int = 0,
                  seed: int = 7) -> list[SessionContext]:  # fmt: skip
    """One page view's context for each of up to `limit` of `sessions` after the first `skip`
    (in a seeded order; a seeded page per session), with the view history of the session's
    pages up to and including it."""
    pages: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    with impressions.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["session_id"] in sessions:
                pages[row["session_id"]].setdefault(row["timestamp"], row)
    rng = np.random.default_rng(seed)
    chosen = sorted(pages)
    rng.shuffle(chosen)
    pick = rng.integers(1 << 30, size=len(chosen))  # each session's page, whatever skip is
    contexts = []
    for session_id, draw in list(zip(chosen, pick.tolist(), strict=True))[skip : skip + limit]:
        ordered = [pages[session_id][t] for t in sorted(pages[session_id])]
        at = draw % len(ordered)
        row = ordered[at]
        history = ViewHistory.of_views([r["current_product_id"] for r in ordered[: at + 1]])
        previous = tuple(row[f"prev_product_{n}"] for n in (1, 2, 3))
        contexts.append(
            SessionContext(
                session_id=session_id,
                customer_id=row["customer_id"],
                current_product_id=row["current_product_id"],
                current_category=row["current_category"],
                current_price=_number(row["current_price"]),
                previous_product_ids=tuple(p for p in previous if p and p != "NONE"),
                products_in_cart=int(float(row["products_in_cart"])),
                device_type=row["device_type"],
                traffic_source=row["traffic_source"],
                time_on_page_sec=_number(row["time_on_page_sec"]),
                scroll_depth=_number(row["scroll_depth"]),
                clicked_product_image=row["clicked_product_image"] in ("1", "True", "true"),
                session_length_mins=_number(row["session_length_mins"]),
                products_viewed_count=int(float(row["products_viewed_count"])),
                view_history=history,
            )
        )
    return contexts


def measure(model: LoadedModel, contexts: list[SessionContext], sizes: list[int],
            mixes: list[RetrievalMix]) -> list[RecallRow]:  # fmt: skip
    """The table's rows: every context ranked exhaustively once, then per size and mix."""
    query = RecommendQuery(session_id="recallbench", k=TOP, min_score=0.0)
    everything = _recommender(model, RecommendLimits(len(model.catalog) + 1, 1))
    exhaustive = [
        {item.product_id for item in everything.recommend_on(model, "", query, c).items}
        for c in contexts
    ]
    ids = model.catalog.product_ids
    rows = []
    for size in sizes:
        for mix in mixes:
            core = _recommender(model, RecommendLimits(0, size, mix))
            recalls, served, retrieval, total = [], [], [], []
            for context, best in zip(contexts, exhaustive, strict=True):
                start = time.perf_counter()
                retrieved = core.candidates(model, context, [])
                retrieval.append(time.perf_counter() - start)
                start = time.perf_counter()
                answer = core.recommend_on(model, "", query, context)
                total.append(time.perf_counter() - start)
                if not best:
                    continue
                found = set(ids[retrieved].tolist())
                recalls.append(len(best & found) / len(best))
                served.append(len(best & {item.product_id for item in answer.items}) / len(best))
            rows.append(RecallRow(size, mix, _mean(recalls), _mean(served),
                                  float(np.median(retrieval)) * 1e6,
                                  float(np.median(total)) * 1e6))  # fmt: skip
    return rows


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _recommender(model: LoadedModel, limits: RecommendLimits) -> Recommender:
    registry = ModelRegistry()
    registry.install("A", model)
    return Recommender(registry, MemoryStore(), limits)


def parse_mix(text: str) -> RetrievalMix:
    """ "neighbours/subcategories/popular" shares, e.g. 0.5/0.3/0.2."""
    parts = text.split("/")
    try:
        return RetrievalMix(*(float(p) for p in parts))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{text[:40]!r} is not neighbours/subcategories/popular: {exc}") from None


def main() -> int:
    parser = SettingsParser("python -m server.recallbench", __doc__ or "", env_prefix="RECO_BENCH_")
    parser.add("--bundle", required_path, "artifacts/latest", "model bundle to load")
    parser.add("--data", required_path, "data/default", "the data set the bundle was trained on")
    parser.add("--sessions", integer(1), "200", "held-out sessions to replay (a page view each)")
    parser.add("--skip", integer(0), "0",
               "held-out sessions (in the seeded order) to leave out first: tune on one range, "
               "report on another")  # fmt: skip
    parser.add("--retrieval-sizes", comma_list(integer(1)), "300", "retrieval sizes to measure")
    parser.add("--mixes", comma_list(parse_mix), "0.2/0.7/0.1",
               "neighbours/subcategories/popular shares of the retrieval budget")  # fmt: skip
    args = SimpleNamespace(**parser.parse())
    started = time.perf_counter()
    app = App(parse_settings(["--bundle", str(args.bundle), "--watch-seconds", "0"]))
    app.load_all()
    model = app.registry.variants()[0].model
    loaded = time.perf_counter() - started
    sessions = held_out_sessions(args.bundle)
    contexts = page_contexts(args.data / IMPRESSIONS_FILE, sessions, args.sessions, args.skip)
    rows = measure(model, contexts, args.retrieval_sizes, args.mixes)
    command = " ".join(["python -m server.recallbench", *sys.argv[1:]])
    print(
        f"`{command}`: model {model.version} ({model.feature_set} set, {len(model.catalog)} "
        f"products, {len(model.in_stock_pool)} in stock, {model.scoring_path} scoring path, "
        f"loaded in {loaded:.1f} s), {len(contexts)} held-out page views (of "
        f"{len(sessions)} held-out sessions, {args.skip} skipped), load average "
        f"{os.getloadavg()[0]:.2f}\n"
    )
    print("| retrieval size | mix (neighbours/subcategories/popular) | recall@10 | "
          "served top-10 = exhaustive | retrieval us p50 | recommend us p50 |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        mix = f"{r.mix.neighbours:g}/{r.mix.subcategories:g}/{r.mix.popular:g}"
        print(f"| {r.size} | {mix} | {r.recall:.3f} | {r.served:.3f} | {r.retrieval_us:.0f} | "
              f"{r.recommend_us:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m server.recallbench", main))
