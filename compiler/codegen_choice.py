"""Which C generator builds a model: auto takes flat when the model is eligible, else TL2cgen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import treelite

from compiler.flatgen import NotEligibleError, read_forest

CODEGENS = ("auto", "flat", "tl2cgen")  # what --codegen accepts
FLAT, TL2CGEN = "flat", "tl2cgen"


@dataclass(frozen=True)
class CodegenChoice:
    """The generator used ("flat" or "tl2cgen"), what was asked for, and why."""

    used: str
    requested: str
    reason: str

    def to_manifest(self) -> dict[str, str]:
        """The manifest's record of the choice."""
        return {"used": self.used, "requested": self.requested, "reason": self.reason}


def choose_codegen(model_file: Path, requested: str) -> CodegenChoice:
    """Resolves --codegen for model_file. Raises NotEligibleError if flat is requested but the
    model is not eligible, and treelite.TreeliteError if Treelite cannot read the model."""
    if requested not in CODEGENS:
        raise ValueError(f"codegen must be one of {list(CODEGENS)}, got {requested!r}")
    if requested == TL2CGEN:
        return CodegenChoice(TL2CGEN, requested, "requested")
    try:
        forest = read_forest(treelite.frontend.load_lightgbm_model(model_file))
    except NotEligibleError as exc:
        if requested == FLAT:
            raise NotEligibleError(f"--codegen flat: {exc}") from exc
        return CodegenChoice(TL2CGEN, requested, f"flat not eligible: {exc}")
    if requested == FLAT:
        return CodegenChoice(FLAT, requested, "requested")
    reason = f"eligible: {forest.n_trees} trees of depth <= {forest.depth}, numerical splits only"
    return CodegenChoice(FLAT, requested, reason)
