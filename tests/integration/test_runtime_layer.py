"""The runtime layer seen from outside: what a serving process loads, and Recommend's features
(explain, max_per_category, exclude_product_ids, retrieval) through a real server."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reco import Catalog
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.servers import ServerProcess, running

# The shared libraries each heavy package maps once imported (onnxmltools is pure Python: it
# imports onnx, whose extension is onnx_cpp2py_export).
HEAVY = {
    "pandas": "pandas/_libs/",
    "matplotlib": "matplotlib/",
    "scikit-learn": "sklearn/",
    "scipy": "scipy/",
    "LightGBM": "lib_lightgbm",
    "Treelite": "libtreelite",
    "TL2cgen": "libtl2cgen",
    "onnxmltools (onnx)": "onnx_cpp2py_export",
    "pyarrow (only with --impression-log-dir)": "libarrow",
}
ONNXRUNTIME = "onnxruntime_pybind11_state"


def mapped(server: ServerProcess) -> str:
    """The server process's memory map: every shared object it has loaded."""
    return Path(f"/proc/{server.process.pid}/maps").read_text()


def track_session(stub: pb_grpc.RecommenderStub, session: str, viewed: str, cart: str) -> None:
    """A tracked session viewing one product with another in its cart."""
    now_ms = time.time_ns() // 1_000_000
    for n, (kind, product) in enumerate(
        ((pb.EVENT_TYPE_VIEW, viewed), (pb.EVENT_TYPE_ADD_TO_CART, cart))
    ):
        event = pb.Event(event_id=f"{session}-{n}", session_id=session, type=kind,
                         product_id=product, device_type="Desktop")  # fmt: skip
        event.client_timestamp.FromMilliseconds(now_ms - 1000 + n)
        stub.TrackEvent(pb.TrackEventRequest(event=event), timeout=10)


@pytest.fixture(scope="module")
def catalog(bundle: Path) -> Catalog:
    return Catalog.load(bundle / "catalog.csv")


@pytest.fixture(scope="module")
def explaining(bundle: Path, logs: Path) -> Iterator[ServerProcess]:
    with running(bundle, "--explain", log_dir=logs) as process:
        yield process


def test_a_default_server_maps_no_training_or_build_library(server: ServerProcess) -> None:
    stub = pb_grpc.RecommenderStub(server.channel())
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.models[0].backend == "compiled"  # the default process: compiled, no explain
    stub.Recommend(pb.RecommendRequest(session_id="maps-cold"), timeout=10)
    maps = mapped(server)
    assert "libpython" in maps or "python3" in maps  # the map is the server's own
    loaded = [name for name, marker in HEAVY.items() if marker in maps]
    assert loaded == [], f"a default server loaded {loaded}"
    assert ONNXRUNTIME not in maps  # only the onnx backend (or auto falling back) loads it


def test_explain_loads_lightgbm_at_start_and_explains_every_item(
    explaining: ServerProcess, catalog: Catalog
) -> None:
    assert HEAVY["LightGBM"] in mapped(explaining)  # built at load, not on the first request
    stub = pb_grpc.RecommenderStub(explaining.channel())
    ids = catalog.product_ids.tolist()
    track_session(stub, "explain-1", ids[0], ids[1])
    answer = stub.Recommend(
        pb.RecommendRequest(session_id="explain-1", k=3, min_score=0.0, explain=True), timeout=10
    )
    assert len(answer.items) == 3
    for item in answer.items:
        assert 1 <= len(item.contributions) <= 3
        sizes = [abs(c.contribution) for c in item.contributions]
        assert sizes == sorted(sizes, reverse=True) and all(c.feature for c in item.contributions)
    plain = stub.Recommend(pb.RecommendRequest(session_id="explain-1", k=3, min_score=0.0))
    assert all(not item.contributions for item in plain.items)


def test_explain_without_explain_enabled_is_an_invalid_argument(server: ServerProcess) -> None:
    stub = pb_grpc.RecommenderStub(server.channel())
    with pytest.raises(grpc.RpcError) as raised:
        stub.Recommend(pb.RecommendRequest(session_id="x", explain=True), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "explain needs a server started with --explain" in str(raised.value.details())


def test_max_per_category_and_exclude_product_ids(server: ServerProcess, catalog: Catalog) -> None:
    stub = pb_grpc.RecommenderStub(server.channel())
    ids = catalog.product_ids.tolist()
    track_session(stub, "rules-1", ids[0], ids[1])
    wide = stub.Recommend(pb.RecommendRequest(session_id="rules-1", k=10, min_score=0.0))
    assert len(wide.items) == 10
    capped = stub.Recommend(
        pb.RecommendRequest(session_id="rules-1", k=10, min_score=0.0, max_per_category=1)
    )
    per_category = Counter(item.category for item in capped.items)
    assert capped.items and max(per_category.values()) == 1
    # The cap keeps rank order: each category's best item, in the uncapped order.
    seen: set[str] = set()
    firsts = []
    for item in wide.items:
        if item.category not in seen:
            seen.add(item.category)
            firsts.append(item.product_id)
    assert [item.product_id for item in capped.items][: len(firsts)] == firsts[: len(capped.items)]
    excluded = [item.product_id for item in wide.items[:3]]
    kept = stub.Recommend(
        pb.RecommendRequest(session_id="rules-1", k=10, min_score=0.0, exclude_product_ids=excluded)
    )
    assert not {item.product_id for item in kept.items} & set(excluded)
    assert [item.product_id for item in kept.items][:7] == [i.product_id for i in wide.items[3:]]
    cold = stub.Recommend(
        pb.RecommendRequest(session_id="nobody-here", k=3, exclude_product_ids=excluded)
    )
    assert cold.cold_start and not {item.product_id for item in cold.items} & set(excluded)


def test_retrieval_over_a_catalog_above_the_limit(
    bundle: Path, logs: Path, catalog: Catalog
) -> None:
    with running(bundle, "--catalog-limit", "100", "--retrieval-size", "100", log_dir=logs) as srv:
        stub = pb_grpc.RecommenderStub(srv.channel())
        ids = catalog.product_ids.tolist()
        track_session(stub, "retrieval-1", ids[0], ids[1])
        answer = stub.Recommend(pb.RecommendRequest(session_id="retrieval-1", k=5, min_score=0.0))
    in_stock = int(catalog.in_stock.sum())
    assert in_stock - 2 > 100  # the default catalog is above the limit set here
    assert not answer.cold_start and answer.candidates_scored == 100
    assert len(answer.items) == 5 and ids[0] not in {i.product_id for i in answer.items}
