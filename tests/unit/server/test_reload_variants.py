"""Admin reloads: an explicit bundle may start variant B beside A; nothing else is invented."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.core.errors import InvalidArgument
from server.core.registry import ModelRegistry
from server.core.reload import Reloader


def test_an_explicit_bundle_starts_variant_b_at_an_equal_share(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    registry = ModelRegistry()

    def load(path: Path) -> Any:
        return SimpleNamespace(version=path.name, bundle_dir=path)

    registry.install("A", load(tmp_path / "a"), share=1.0)
    reloader = Reloader(registry, load, bundles={"A": tmp_path / "a"}, root=tmp_path)
    result = reloader.reload_request("B", "b", reload_configured=False)
    assert result.swapped and result.version == "b"
    assert [(v.name, v.share) for v in registry.variants()] == [("A", 1.0), ("B", 1.0)]
    with pytest.raises(InvalidArgument, match="variant must be one of"):
        reloader.reload_request("B", "", reload_configured=True)  # B has no configured path
    with pytest.raises(InvalidArgument, match="variant must be one of"):
        reloader.reload_request("C", "b", reload_configured=False)
