"""A 20,000-product catalog through the documented commands: generate, train, compile, serve.

The same path as a 100,000- or 1,000,000-product bundle (docs/benchmarks.md, "Catalog scale"),
small enough for every test run: the sparse affinity table in the bundle, Recommend above the
catalog limit (the retrieval stage), Score over catalog ids, and the camping story at the head.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reco import AFFINITY_CSV_FILE, AFFINITY_FILES, Catalog, SparseAffinity
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.servers import ROOT, ServerProcess, running
from tests.integration.test_sessions_api import E, product_named, track

PRODUCTS = 20_000
ROWS = 6_000
TOP_K = 50


def _run(*args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def large_bundle(workdir: Path) -> Path:
    data, out = workdir / "data-20k", workdir / "artifacts" / "catalog-20k"
    seconds = _run("training", "generate", "--products", str(PRODUCTS), "--rows", str(ROWS),
                   "--seed", "7", "--out", str(data))  # fmt: skip
    seconds += _run("training", "train", "--data", str(data), "--out", str(out),
                    "--affinity-top-k", str(TOP_K))  # fmt: skip
    seconds += _run("compiler", "build", str(out))
    print(f"\n20,000 products: generate + train + compile took {seconds:.1f} s")  # in the log
    return out


@pytest.fixture(scope="module")
def large_server(large_bundle: Path, logs: Path) -> Iterator[ServerProcess]:
    with running(large_bundle, log_dir=logs) as process:
        yield process


def test_the_bundle_holds_the_sparse_table_cut_at_top_k(large_bundle: Path) -> None:
    manifest = json.loads((large_bundle / "manifest.json").read_text())
    assert set(AFFINITY_FILES) <= set(manifest["files"])
    assert AFFINITY_CSV_FILE not in manifest["files"]
    catalog = Catalog.load(large_bundle / "catalog.csv")
    assert len(catalog) == PRODUCTS
    table = SparseAffinity.load(large_bundle, PRODUCTS)
    per_product = np.diff(table.indptr)
    assert 0 < per_product.max() <= TOP_K
    assert len(table) > 0 and np.all(table.strength > 0)
    on_disk = sum((large_bundle / name).stat().st_size for name in AFFINITY_FILES)
    assert on_disk < 16 * len(table) + 8 * (PRODUCTS + 2) + 3 * 1024  # 12 bytes a pair + headers


def _camping_story(server: ServerProcess, catalog: Catalog) -> pb.RecommendResponse:
    """Recommend for a shopper who viewed boots, put a tent in the cart and views a bag."""
    boots, tent, bag = (product_named(catalog, n) for n in ("Hiking Boots", "Tent", "Sleeping Bag"))
    stub = pb_grpc.RecommenderStub(server.channel())
    session = "scale-story"
    track(stub, session, 1, E.EVENT_TYPE_VIEW, boots, 0)
    track(stub, session, 2, E.EVENT_TYPE_ADD_TO_CART, tent, 120)
    track(stub, session, 3, E.EVENT_TYPE_VIEW, bag, 180)
    return stub.Recommend(pb.RecommendRequest(session_id=session, k=10))


def test_recommend_above_the_catalog_limit_plays_the_camping_story(
    large_server: ServerProcess, large_bundle: Path, logs: Path
) -> None:
    catalog = Catalog.load(large_bundle / "catalog.csv")
    tent, bag = (product_named(catalog, n) for n in ("Tent", "Sleeping Bag"))
    response = _camping_story(large_server, catalog)
    assert not response.cold_start and len(response.items) == 10
    # Retrieval, not the whole catalog: the default limit is 1,000 products.
    assert 0 < response.candidates_scored < 2_000
    shown = {item.product_id for item in response.items}
    assert not shown & {tent, bag}
    in_stock = dict(zip(catalog.product_ids.tolist(), catalog.in_stock.tolist(), strict=True))
    assert all(in_stock[p] for p in shown)
    # Camping gear comes back (the default catalog's test asks 2 of the top 3; a model of 6,000
    # rows over 20,000 products has seen each product far less often, so 2 of the top 5 here).
    top5 = [item.subcategory for item in response.items[:5]]
    assert sum(s == "Camping" for s in top5) >= 2, [(i.name, i.subcategory) for i in response.items]
    assert response.items[0].subcategory == "Camping", [
        (i.name, i.subcategory) for i in response.items
    ]
    # Retrieval answers as scoring every product would: the same server with a limit above the
    # catalog (every eligible product scored) shows mostly the same ten, the same first.
    with running(large_bundle, "--catalog-limit", "100000", log_dir=logs) as whole:
        everything = _camping_story(whole, catalog)
    assert everything.candidates_scored > 10 * response.candidates_scored
    exhaustive = [item.product_id for item in everything.items]
    served = [item.product_id for item in response.items]
    assert served[0] == exhaustive[0] and len(set(served) & set(exhaustive)) >= 8


def test_score_over_catalog_ids_of_a_large_catalog(
    large_server: ServerProcess, large_bundle: Path
) -> None:
    catalog = Catalog.load(large_bundle / "catalog.csv")
    rng = np.random.default_rng(3)
    ids = catalog.product_ids[rng.choice(PRODUCTS, 100, replace=False)].tolist()
    stub = pb_grpc.RecommenderStub(large_server.channel())
    context = pb.SessionContext(current_product_id=ids[0], device_type="Desktop")
    response = stub.Score(pb.ScoreRequest(context=context, candidate_ids=ids, top_k=5))
    assert len(response.scores) == 100 and not response.unknown_product_ids
    assert all(0.0 <= s <= 1.0 for s in response.scores)
