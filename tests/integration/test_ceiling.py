"""The ceiling benchmark's parts: the bare servers answer as documented (the echo with the
request's bytes, the model-call handler with model.so's scores), and the raw-bytes client's
unary and streamed runs count every call against the real server. No timings are asserted."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from loadtest import ceiling
from loadtest.serverbench import bare_server
from reco import load_backend
from reco.v1 import recommender_pb2 as pb
from tests.integration.servers import ServerProcess


@pytest.fixture(scope="module")
def matrices(bundle: Path) -> list[bytes]:
    return ceiling.feature_requests(bundle, 20, 30)


@pytest.mark.parametrize("mode", ["echo", "model"])
def test_the_bare_servers_answer_as_documented(
    bundle: Path, matrices: list[bytes], mode: str
) -> None:
    logs = Path(tempfile.mkdtemp(prefix="ceiling-"))
    payload = matrices[0]
    with bare_server(bundle, logs, mode) as running:
        run = ceiling.unary(running.target, running.pid, [payload], seconds=0.3, in_flight=2)
    assert run.calls and run.server_cpu_s > 0
    features = pb.ScoreRequest.FromString(payload).features
    rows = np.frombuffer(features.data, dtype="<f4").reshape(features.rows, features.cols)
    expected = load_backend(bundle).predict(rows).tolist()
    assert len(expected) == 20
    for _, answer in run.calls:
        if mode == "echo":
            assert answer == payload
        else:
            assert list(pb.ScoreResponse.FromString(answer).scores) == expected


def test_unary_and_streamed_runs_count_every_call(server: ServerProcess, bundle: Path) -> None:
    ids = pb.ScoreRequest(context=pb.SessionContext(current_product_id="PROD0001"),
                          candidate_ids=["PROD0002", "PROD0003"]).SerializeToString()  # fmt: skip
    pid = server.process.pid
    unary = ceiling.unary(server.target, pid, [ids], seconds=0.3, in_flight=4)
    assert unary.calls and len(unary.server_time_us()) == len(unary.calls)
    for streams, depth in ((4, 1), (1, 4)):
        streamed = ceiling.streamed(server.target, pid, [ids], 0.3, streams, depth)
        answers = [pb.ScoreResponse.FromString(a) for _, a in streamed.calls]
        assert answers and all(len(a.scores) == 2 for a in answers)
    row = ceiling.run_row("label", [unary])
    assert row.startswith("| label | ") and row.count("|") == ceiling.HEADER.splitlines()[0].count(
        "|"
    )
