"""Model registry: atomic installs and a stable A/B split by session id."""

from __future__ import annotations

from typing import Any, cast

import pytest

from server.core.errors import Unavailable
from server.core.model import LoadedModel
from server.core.registry import ModelRegistry, session_bucket


def fake_model(version: str) -> LoadedModel:
    return cast(LoadedModel, version)  # the registry only stores and returns the object


def test_no_model_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="no model"):
        ModelRegistry().select("s")


def test_single_model_has_no_variant_name_and_replacing_it_keeps_its_share() -> None:
    registry = ModelRegistry()
    registry.install("A", fake_model("v1"))
    assert registry.select("s") == ("v1", "")
    registry.install("A", fake_model("v2"))
    assert registry.select("s") == ("v2", "")
    assert [v.share for v in registry.variants()] == [1.0]


def test_ab_split_is_stable_per_session_and_close_to_the_configured_share() -> None:
    registry = ModelRegistry()
    registry.install("A", fake_model("a"), share=0.8)
    registry.install("B", fake_model("b"), share=0.2)
    sessions = [f"session-{i}" for i in range(20000)]
    first: dict[str, Any] = {s: registry.select(s) for s in sessions}
    assert all(registry.select(s) == first[s] for s in sessions[:2000])
    share_b = sum(1 for v in first.values() if v[1] == "B") / len(sessions)
    assert abs(share_b - 0.2) < 0.015  # binomial sd is 0.003
    assert {v[1] for v in first.values()} == {"A", "B"}


def test_bucket_is_deterministic_across_calls_and_in_unit_interval() -> None:
    assert session_bucket("abc") == session_bucket("abc")
    assert 0.0 <= session_bucket("") < 1.0
