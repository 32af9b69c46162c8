"""Session fixtures: the default bundle built once with the real CLIs, and server processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.compiler_support import copy_bundle
from tests.integration.servers import ROOT, RedisServer, ServerProcess, running

DEFAULT_ROWS = "15000"
DEFAULT_SEED = "7"


def _run(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def bundle(workdir: Path) -> Path:
    """The default data (15,000 generated rows, seed 7) on the candidate set (27 features, the
    request kernel), trained and compiled like `make model`; the default bundle of `make model`
    (the sequence set) is test_sequence_serving's."""
    data = workdir / "data"
    out = workdir / "artifacts" / "default"
    _run("training", "generate", "--rows", DEFAULT_ROWS, "--seed", DEFAULT_SEED, "--out", str(data))
    _run("training", "train", "--data", str(data), "--out", str(out), "--feature-set", "candidate")
    _run("compiler", "build", str(out))
    return out


def train_bundle(workdir: Path, name: str, *train_args: str) -> Path:
    """A bundle of the default data (workdir/data, made by the `bundle` fixture), trained with
    these arguments and compiled like `make model`; built once per test session."""
    out = workdir / "artifacts" / name
    if not (out / "manifest.json").exists():
        _run("training", "train", "--data", str(workdir / "data"), "--out", str(out), *train_args)
        _run("compiler", "build", str(out))
    return out


def renamed_copy(source: Path, target: Path, version: str) -> Path:
    """The same model under another version name (a new bundle directory)."""
    copy_bundle(source, target)
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = version
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target


@pytest.fixture(scope="session")
def bundle_b(bundle: Path, workdir: Path) -> Path:
    """A second, valid bundle (same model, another version) for reloads and A/B variants."""
    return renamed_copy(bundle, workdir / "artifacts" / "variant-b", "variant-b")


@pytest.fixture(scope="session")
def broken_bundle(bundle: Path, workdir: Path) -> Path:
    """A bundle no backend can serve: its parity probe disagrees with its model."""
    broken = renamed_copy(bundle, workdir / "artifacts" / "broken", "broken")
    manifest_path = broken / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    probe = manifest["parity_probe"]["probabilities"]
    manifest["parity_probe"]["probabilities"] = [min(1.0, p + 0.05) for p in probe]
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return broken


@pytest.fixture(scope="session")
def logs(workdir: Path) -> Path:
    path = workdir / "logs"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(bundle: Path, logs: Path) -> Iterator[ServerProcess]:
    """One default server shared by a test module."""
    with running(bundle, log_dir=logs) as process:
        yield process


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private directory with a short path, for Unix sockets (at most 107 bytes) and keys."""
    directory = Path(tempfile.mkdtemp(prefix="reco-t-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def start_redis(logs: Path, *config: str, password: str = "") -> RedisServer:
    """A redis-server with the given config; the test is skipped only where Redis is not
    installed and not required (CI sets RECO_REQUIRE_REDIS=1)."""
    try:
        return RedisServer(logs, *config, password=password)
    except FileNotFoundError as exc:
        if os.environ.get("RECO_REQUIRE_REDIS"):
            raise
        pytest.skip(str(exc))


@pytest.fixture
def make_redis(logs: Path) -> Iterator[Callable[..., RedisServer]]:
    """Starts redis-servers (start_redis) that are stopped after the test."""
    started: list[RedisServer] = []

    def make(*config: str, password: str = "") -> RedisServer:
        started.append(start_redis(logs, *config, password=password))
        return started[-1]

    yield make
    for instance in started:
        instance.stop()


@pytest.fixture
def redis_server(make_redis: Callable[..., RedisServer]) -> RedisServer:
    """A fresh redis-server without persistence."""
    return make_redis()
