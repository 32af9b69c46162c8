"""The dependency rules (pyproject [tool.importlinter], run by make lint) hold, are complete,
and fail on a violating import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("reco", "server", "compiler", "training", "loadtest")


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return list(config["contracts"])


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_the_load_tester_contract_lists_every_private_runtime_module() -> None:
    (loadtest,) = [c for c in contracts() if "reco._bundle" in c.get("forbidden_modules", [])]
    private = {f"reco.{p.stem}" for p in (ROOT / "reco").glob("_*.py") if p.stem != "__init__"}
    assert private <= set(loadtest["forbidden_modules"])  # type: ignore[arg-type]


def copy_tree(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))  # fmt: skip
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_contracts_hold_and_a_server_importing_training_breaks_them(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    kept = lint_imports(tree)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "0 broken" in kept.stdout
    (tree / "server" / "core" / "sneaky.py").write_text(
        '"""Imports the training pipeline into the server."""\n\nimport training.pipeline\n'
    )
    broken = lint_imports(tree)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout
    assert "server.core.sneaky -> training.pipeline" in broken.stdout


def test_a_serving_module_importing_pandas_breaks_them(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    (tree / "reco" / "_sneaky.py").write_text('"""Reads frames."""\n\nimport pandas\n')
    broken = lint_imports(tree)
    assert broken.returncode != 0
    assert "reco._sneaky -> pandas" in broken.stdout
