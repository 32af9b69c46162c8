"""Static checks of the Dockerfile (no Docker engine runs here): what it names must exist."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
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
            starts = [i for i in range(1, len(words)) if words[i] == "-m" and
                      words[i - 1].endswith("python")]  # fmt: skip
            if not starts:
                continue
            rest = words[starts[0] + 1 :]
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


def environment() -> dict[str, str]:
    """The ENV instruction's variables (KEY=value pairs)."""
    pairs: dict[str, str] = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                pairs[key] = value
    return pairs


def help_of(*module: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", *module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_environment_and_ports_match_the_server_settings() -> None:
    known = help_of("server") + help_of("server.healthcheck")
    variables = [name for name in environment() if name.startswith("RECO_")]
    assert variables
    for variable in variables:
        assert variable in known, f"{variable} is neither a server nor a health check setting"
    env = {k: v for k, v in environment().items() if k.startswith("RECO_")}
    settings = parse_settings([], environ=env)  # every value passes the start-up validation
    exposed = {
        int(p) for keyword, args in instructions() if keyword == "EXPOSE" for p in args.split()
    }
    assert exposed == {settings.port, settings.metrics_port}


def test_only_the_public_listener_binds_all_interfaces_and_it_serves_tls() -> None:
    env = environment()
    settings = parse_settings([], environ={k: v for k, v in env.items() if k.startswith("RECO_")})
    assert settings.host == "0.0.0.0"
    # Admin keeps its default (a Unix socket in the runtime directory) or a loopback address.
    assert env.get("RECO_ADMIN_ADDRESS", "").startswith(("", "unix:", "127.", "[::1]"))
    assert "0.0.0.0" not in env.get("RECO_ADMIN_ADDRESS", "")
    assert settings.runtime_dir is not None
    assert f"install -d -o reco -g reco -m 0700 {settings.runtime_dir}" in DOCKERFILE
    # TLS from files that are mounted, not built into the image.
    assert settings.tls_cert is not None and settings.tls_key is not None
    copied = " ".join(args for keyword, args in instructions() if keyword == "COPY")
    mount_dir = str(settings.tls_cert.parent)
    assert mount_dir not in copied and str(settings.tls_key.parent) == mount_dir
    assert f":{mount_dir}:ro" in DOCKERFILE  # the documented docker run mounts it


def test_the_built_in_bundle_is_signed_and_its_key_is_read_only_for_the_server() -> None:
    runs = invocations()
    keygen = [flags for command, flags in runs if command == ["training", "keygen"]]
    assert keygen, "no key is generated for the built-in bundle"
    for command in (["training", "train"], ["compiler", "build"]):
        flags = [f for c, f in runs if c == command]
        assert flags and "--bundle-key-file" in flags[0], f"{command} does not sign"
    key_copy = [a for k, a in instructions() if k == "COPY" and "bundle.key" in a]
    assert key_copy and "--chown=root:reco" in key_copy[0] and "--chmod=0440" in key_copy[0]
    assert environment()["RECO_BUNDLE_KEY_FILE"] == shlex.split(key_copy[0])[-1]
    bundles_copy = [a for k, a in instructions() if k == "COPY" and "/bundles" in a]
    assert bundles_copy and "--chown" not in bundles_copy[0]  # root-owned: the server cannot write


def test_runs_as_a_non_root_user_with_a_grpc_health_check() -> None:
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    healthcheck = [args for keyword, args in instructions() if keyword == "HEALTHCHECK"]
    assert healthcheck and "server.healthcheck" in healthcheck[0]
    entrypoint = [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert entrypoint == ['["python", "-m", "server"]']


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, in order."""
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            out.append([])
        out[-1].append((keyword, args))
    return out


def test_the_runtime_stage_installs_the_serve_extra_only() -> None:
    runtime = stages()[-1]
    copied = [args for keyword, args in runtime if keyword == "COPY"]
    assert not any("/opt/venv" in args for args in copied), "the build venv is copied whole"
    installs = [args for keyword, args in runtime if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 1
    extras = re.findall(r"\[([\w,]+)\]", installs[0])
    assert extras == ["serve"], f"the runtime stage installs extras {extras}"
    build = " ".join(args for keyword, args in stages()[0] if keyword == "RUN")
    assert "[train,build]" in build  # training and the compiler run in the build stage only


def test_the_serve_extra_holds_no_training_or_build_library() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serving = [*project["dependencies"], *project["optional-dependencies"]["serve"]]
    names = {re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower() for requirement in serving}
    heavy = {"pandas", "matplotlib", "scikit-learn", "lightgbm", "treelite", "tl2cgen",
             "onnxmltools", "onnx", "scipy"}  # fmt: skip
    assert names and not names & heavy, names & heavy
