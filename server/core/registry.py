"""The models being served: one per A/B variant, chosen by a stable hash of the session id."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from server.core.errors import Unavailable
from server.core.model import LoadedModel

PRIMARY = "A"
VARIANT_B = "B"


@dataclass(frozen=True)
class Variant:
    """A named model and the share of sessions routed to it."""

    name: str
    model: LoadedModel
    share: float


def session_bucket(session_id: str) -> float:
    """A stable position in [0, 1) for a session id (the same in every process and replica)."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class ModelRegistry:
    """Holds the variants; swaps are atomic reference replacements, so a request that already
    picked a model finishes on it while new requests see the new one."""

    def __init__(self) -> None:
        self._variants: tuple[Variant, ...] = ()
        self._write_lock = threading.Lock()

    def install(self, name: str, model: LoadedModel, share: float | None = None) -> None:
        """Adds or replaces a variant's model; share None keeps the variant's current share."""
        with self._write_lock:
            current = {v.name: v for v in self._variants}
            if share is None:
                share = current[name].share if name in current else 1.0
            current[name] = Variant(name, model, share)
            variants = tuple(sorted(current.values(), key=lambda v: v.name))
            total = sum(v.share for v in variants)
            if not variants or total <= 0:
                raise ValueError("variant shares must add up to more than 0")
            self._variants = variants

    def variants(self) -> tuple[Variant, ...]:
        """The variants in name order."""
        return self._variants

    def select(self, session_id: str) -> tuple[LoadedModel, str]:
        """The model for a session and its variant name ("" when only one model is served)."""
        variants = self._variants  # one read: a concurrent swap cannot tear this request
        if not variants:
            raise Unavailable("no model is loaded yet")
        if len(variants) == 1:
            return variants[0].model, ""
        point = session_bucket(session_id) * sum(v.share for v in variants)
        for variant in variants:
            point -= variant.share
            if point < 0:
                return variant.model, variant.name
        return variants[-1].model, variants[-1].name
