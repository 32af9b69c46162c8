"""Virtualenvs of their own for clients whose pins conflict with ours (tritonclient pins
protobuf < 7), created on first use under the repository (gitignored) and reused after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.servers import ROOT


def client_venv(name: str, requirements: tuple[str, ...], required_by: str) -> Path:
    """The python of .venv-<name> with `requirements` installed (once: a stamp file records
    them). Where it cannot be made the test is skipped, unless the environment variable
    `required_by` is set (CI sets it), when it fails."""
    venv = ROOT / f".venv-{name}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = "\n".join(requirements)
    if stamp.is_file() and stamp.read_text() == wanted and python.exists():
        return python
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           capture_output=True, timeout=300)  # fmt: skip
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *requirements],
            check=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        message = f"cannot install {' '.join(requirements)} into {venv.name}: {detail[-500:]}"
        if os.environ.get(required_by):
            raise RuntimeError(message) from None
        pytest.skip(f"{message} (set {required_by}=1 to make this a failure)")
    stamp.write_text(wanted)
    return python
