"""Static checks of the Dockerfile (no Docker engine runs here): what it names must exist."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

from server.settings import parse_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    rows = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def test_multi_stage_slim_python_base() -> None:
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert len(bases) == 2 and all(b == "python:3.11-slim" for b in bases)


def test_every_copied_path_exists() -> None:
    for keyword, args in instructions():
        if keyword == "COPY" and "--from=" not in args:
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


def test_every_python_module_it_runs_exists() -> None:
    modules = set(re.findall(r"python -m ([\w.]+)", DOCKERFILE))
    modules |= set(re.findall(r'"-m", "([\w.]+)"', DOCKERFILE))
    assert {"server", "server.healthcheck", "training", "compiler"} <= modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def invocations() -> list[tuple[list[str], list[str]]]:
    """([module, subcommand?], flags) for every `python -m` the RUN lines execute."""
    found = []
    for keyword, args in instructions():
        if keyword != "RUN":
            continue
        for part in re.split(r"&&|;", args):
            words = shlex.split(part)
            if "-m" not in words:
                continue
            rest = words[words.index("-m") + 1 :]
            # `-m training generate ...`: a second word that is a name is a subcommand.
            command = rest[:2] if len(rest) > 1 and rest[1].isidentifier() else rest[:1]
            flags = [w for w in rest if w.startswith("--")]
            found.append((command, flags))
    return found


def test_the_commands_it_runs_accept_its_flags() -> None:
    runs = invocations()
    commands = {tuple(c) for c, _ in runs}
    assert commands >= {("training", "generate"), ("training", "train"), ("compiler", "build")}
    for command, flags in runs:
        help_text = subprocess.run(
            [sys.executable, "-m", *command, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for flag in flags:
            assert flag in help_text, f"{' '.join(command)} does not accept {flag}"


def test_environment_and_ports_match_the_server_settings() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "server", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    variables = re.findall(r"(RECO_\w+)=", DOCKERFILE)
    assert variables
    for variable in variables:
        assert variable in help_text, f"{variable} is not a server setting"
    defaults = parse_settings([])
    exposed = {
        int(p) for keyword, args in instructions() if keyword == "EXPOSE" for p in args.split()
    }
    assert exposed == {defaults.port, defaults.metrics_port}


def test_runs_as_a_non_root_user_with_a_grpc_health_check() -> None:
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    healthcheck = [args for keyword, args in instructions() if keyword == "HEALTHCHECK"]
    assert healthcheck and "server.healthcheck" in healthcheck[0]
    entrypoint = [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert entrypoint == ['["python", "-m", "server"]']
