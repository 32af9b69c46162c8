"""reco.v1.Admin against a real server: only on its own listener and with the token, bundles
only from under the root and only signed, model.so checked before dlopen, no paths leaked."""

from __future__ import annotations

import random
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from reco import LIBRARY_FILE, MODEL_FILE, SIGNATURE_FILE, Catalog
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from tests.integration.servers import ServerProcess, running
from tests.integration.tampering import (
    fixed_key,
    malicious_library,
    replace_file,
    sign,
    signed_copy,
    write_key_file,
)

KEY = fixed_key("admin-tests")
TOKEN = "s3cr3t-admin-token-for-tests-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
# An absolute path in a message: a slash at the start or after a space, quote or parenthesis.
ABSOLUTE_PATH = re.compile(r"(^|[\s'\"(=])/[A-Za-z]")


@pytest.fixture(scope="module")
def root(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle root holding one good bundle, signed with KEY."""
    directory = tmp_path_factory.mktemp("bundle-root")
    signed_copy(bundle, directory / "good", KEY, version="good")
    return directory


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Key, token and admin socket in a short private directory (socket paths are limited)."""
    directory = Path(tempfile.mkdtemp(prefix="reco-admin-"))
    write_key_file(directory / "bundle.key", KEY)
    (directory / "token").write_text(TOKEN + "\n")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def admin_server(root: Path, private: Path, logs: Path) -> Iterator[ServerProcess]:
    with running(
        root / "good",
        "--bundle-key-file", str(private / "bundle.key"),
        "--admin-address", f"unix:{private / 'admin.sock'}",
        "--admin-token-file", str(private / "token"),
        "--watch-seconds", "0",
        "--explain",
        log_dir=logs,
    ) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def admin(private: Path, admin_server: ServerProcess) -> Iterator[pb_grpc.AdminStub]:
    with grpc.insecure_channel(f"unix:{private / 'admin.sock'}") as channel:
        yield pb_grpc.AdminStub(channel)


def reload(admin: pb_grpc.AdminStub, **fields: object) -> pb.ReloadModelResponse:
    return admin.ReloadModel(pb.ReloadModelRequest(**fields), metadata=AUTH, timeout=120)  # type: ignore[arg-type]


def info(server: ServerProcess) -> pb.GetModelInfoResponse:
    with server.channel() as channel:
        return pb_grpc.RecommenderStub(channel).GetModelInfo(pb.GetModelInfoRequest())


def restore(admin: pb_grpc.AdminStub, server: ServerProcess) -> None:
    """Back to the configured bundle, so each test starts from 'good'."""
    assert reload(admin, reload_configured=True).swapped
    assert info(server).models[0].version == "good"


def test_admin_is_not_served_on_the_public_port(admin_server: ServerProcess) -> None:
    with admin_server.channel() as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.AdminStub(channel).ReloadModel(
                pb.ReloadModelRequest(reload_configured=True), metadata=AUTH
            )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = {s.name for reply in listing for s in reply.list_services_response.service}
    assert "reco.v1.Recommender" in services and "reco.v1.Admin" not in services


def test_the_admin_socket_is_private(private: Path, admin_server: ServerProcess) -> None:
    assert (private / "admin.sock").stat().st_mode & 0o777 == 0o600


def test_admin_calls_need_the_token(admin: pb_grpc.AdminStub, admin_server: ServerProcess) -> None:
    request = pb.ReloadModelRequest(reload_configured=True)
    for metadata in ((), (("authorization", f"Bearer {TOKEN}x"),), (("authorization", TOKEN),),
                     (("authorization", "Bearer "),)):  # fmt: skip
        with pytest.raises(grpc.RpcError) as refused:
            admin.ReloadModel(request, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert TOKEN not in (refused.value.details() or "")
    assert reload(admin, reload_configured=True).swapped
    assert "refused /reco.v1.Admin/ReloadModel: no valid admin token" in admin_server.log()


def test_an_empty_reload_request_reloads_nothing(
    admin: pb_grpc.AdminStub, admin_server: ServerProcess
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        reload(admin)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reload_configured" in (refused.value.details() or "")


def reload_counts(server: ServerProcess) -> dict[str, float]:
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5
    ).read().decode()  # fmt: skip
    found = re.findall(r'reco_model_reloads_total\{result="(\w+)"\} ([\d.e+]+)', text)
    return {result: float(value) for result, value in found}


def bytes_parsing_as_an_empty_request(count: int) -> list[bytes]:
    """Random byte strings that protobuf parses as an empty ReloadModelRequest (unknown fields)."""
    rng = random.Random(9)
    found: list[bytes] = []
    while len(found) < count:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)))
        message = pb.ReloadModelRequest()
        try:
            message.ParseFromString(data)
        except Exception:  # DecodeError: not one of those we want
            continue
        if message == pb.ReloadModelRequest():
            found.append(data)
    return found


def test_random_bytes_never_trigger_a_reload(private: Path, admin_server: ServerProcess) -> None:
    before = reload_counts(admin_server)
    with grpc.insecure_channel(f"unix:{private / 'admin.sock'}") as channel:
        raw = channel.unary_unary("/reco.v1.Admin/ReloadModel")
        for data in bytes_parsing_as_an_empty_request(10):
            with pytest.raises(grpc.RpcError) as refused:
                raw(data, metadata=AUTH, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reload_counts(admin_server) == before


def test_a_constructor_in_an_unsigned_or_forged_model_so_never_runs(
    admin: pb_grpc.AdminStub, admin_server: ServerProcess, root: Path, tmp_path: Path
) -> None:
    """The attacker writes model.so (with a constructor) and a manifest that hashes it; without
    the key they can only leave the bundle unsigned or sign it with a key of their own."""
    marker = tmp_path / "constructor-ran"
    payload = malicious_library(tmp_path, marker)
    unsigned = signed_copy(root / "good", root / "evil-unsigned", KEY, version="evil")
    replace_file(unsigned, LIBRARY_FILE, payload)
    (unsigned / SIGNATURE_FILE).unlink()
    forged = signed_copy(root / "good", root / "evil-forged", KEY, version="evil")
    replace_file(forged, LIBRARY_FILE, payload)
    sign(forged, fixed_key("attacker"))
    stale = signed_copy(root / "good", root / "evil-stale", KEY, version="evil")
    replace_file(stale, LIBRARY_FILE, payload)  # the old, valid signature no longer matches

    outcomes = {name: reload(admin, bundle_path=name)
                for name in ("evil-unsigned", "evil-forged", "evil-stale")}  # fmt: skip
    assert not marker.exists(), "the malicious constructor ran in the server"
    assert all(not r.swapped for r in outcomes.values()), outcomes
    assert "not signed" in outcomes["evil-unsigned"].error
    assert "another key" in outcomes["evil-forged"].error
    assert "does not match manifest.json" in outcomes["evil-stale"].error
    assert info(admin_server).models[0].version == "good"


def test_paths_outside_the_root_and_escaping_symlinks_are_refused(
    admin: pb_grpc.AdminStub, admin_server: ServerProcess, root: Path, tmp_path: Path
) -> None:
    outside = signed_copy(root / "good", tmp_path / "outside", KEY, version="outside")
    (root / "escape").symlink_to(outside)  # validly signed, but not under the root
    (root / "inside-link").symlink_to(root / "good")  # a symlink that stays inside is fine
    for path in (str(outside), "../outside", "escape", "escape/../good/..", str(root)):
        with pytest.raises(grpc.RpcError) as refused:
            reload(admin, bundle_path=path)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
        details = refused.value.details() or ""
        assert "bundle root" in details, details
        if not path.startswith("/"):  # the client's own value may be echoed, not where it leads
            assert str(outside) not in details and str(root) not in details, details
    assert reload(admin, bundle_path="inside-link").swapped
    assert info(admin_server).models[0].bundle_path == "good"  # the real path, relative
    restore(admin, admin_server)


def test_a_truncated_model_so_with_a_matching_hash_is_never_dlopened(
    admin: pb_grpc.AdminStub, admin_server: ServerProcess, root: Path
) -> None:
    """A broken pipeline signed a half-written library: the server must not SIGBUS on it."""
    truncated = signed_copy(root / "good", root / "truncated", KEY, version="truncated")
    data = (truncated / LIBRARY_FILE).read_bytes()
    replace_file(truncated, LIBRARY_FILE, data[: len(data) // 2])
    sign(truncated, KEY)
    outcome = reload(admin, bundle_path="truncated")
    assert admin_server.process.poll() is None, f"server died:\n{admin_server.log()}"
    model = info(admin_server).models[0]
    assert outcome.swapped and model.version == "truncated" and model.backend == "onnx"
    assert "truncated or corrupt" in model.rejected_backends[0]
    assert not any(ABSOLUTE_PATH.search(r) for r in model.rejected_backends), model
    restore(admin, admin_server)


def test_model_info_and_reload_errors_show_no_absolute_paths(
    admin: pb_grpc.AdminStub, admin_server: ServerProcess, root: Path
) -> None:
    broken = signed_copy(root / "good", root / "nested" / "broken-so", KEY, version="broken")
    replace_file(broken, LIBRARY_FILE, b"\x7fELF" + b"\0" * 60)  # an ELF header of nothing
    replace_file(broken, "model.onnx", b"not onnx")
    replace_file(broken, MODEL_FILE, b"not a model")
    sign(broken, KEY)
    outcome = reload(admin, bundle_path=str(root / "nested" / "broken-so"))
    current = info(admin_server)
    assert not outcome.swapped and current.models[0].version == "good"
    assert outcome.error.startswith("cannot load bundle nested/broken-so: ")
    for text in (outcome.error, current.last_reload_error, current.models[0].bundle_path):
        assert not ABSOLUTE_PATH.search(text), text
        assert str(root) not in text
    assert current.models[0].bundle_path == "good"


def test_a_reload_with_a_mismatched_model_txt_fails_and_explain_keeps_working(
    admin: pb_grpc.AdminStub, admin_server: ServerProcess, root: Path, bundle: Path
) -> None:
    """model.txt is only read for explanations: a reload that did not check it swapped in a
    model whose every explain call failed. Every listed file is verified at load now."""
    mismatched = signed_copy(root / "good", root / "mismatched", KEY, version="mismatched")
    (mismatched / MODEL_FILE).write_text("this is not the model the manifest hashed\n")
    outcome = reload(admin, bundle_path="mismatched")
    assert not outcome.swapped and "model.txt sha256" in outcome.error
    ids = Catalog.load(bundle / "catalog.csv").product_ids.tolist()
    with admin_server.channel() as channel:
        stub = pb_grpc.RecommenderStub(channel)
        event = pb.Event(event_id="explain-1", session_id="explain", product_id=ids[0],
                         type=pb.EventType.EVENT_TYPE_VIEW, device_type="Mobile")  # fmt: skip
        stub.TrackEvent(pb.TrackEventRequest(event=event))
        for _ in range(20):
            reply = stub.Recommend(
                pb.RecommendRequest(session_id="explain", k=3, min_score=0.0, explain=True)
            )
            assert reply.model_version == "good" and reply.items
            assert all(item.contributions for item in reply.items)
