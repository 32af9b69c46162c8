"""Plain request and result types of the core, filled in by the transport."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from reco import SessionContext


@dataclass(frozen=True, slots=True)
class Candidates:
    """Candidate products in request order; category/price overrides are sparse (index -> value)."""

    product_ids: list[str]
    categories: dict[int, str] = field(default_factory=dict)
    prices: dict[int, float] = field(default_factory=dict)
    # How the caller named them, for error messages: "candidates" or "candidate_ids".
    field: str = "candidates"

    def __len__(self) -> int:
        return len(self.product_ids)

    def id_path(self, index: int) -> str:
        """The request path of one candidate's id, e.g. candidates[3].product_id."""
        suffix = ".product_id" if self.field == "candidates" else ""
        return f"{self.field}[{index}]{suffix}"


@dataclass(frozen=True, slots=True)
class FeatureRows:
    """A client-built feature matrix: little-endian float32 bytes, row-major, NaN = missing."""

    data: bytes
    rows: int
    cols: int


@dataclass(frozen=True, slots=True)
class ScoreQuery:
    """One Score call: a context plus candidates and/or a feature matrix."""

    context: SessionContext
    candidates: Candidates
    top_k: int = 0
    min_score: float | None = None
    features: FeatureRows | None = None
    skip_unknown: bool = False


@dataclass(slots=True)
class ScoreResult:
    """Scores in request order, and the indices of the ranked (filtered, cut) candidates."""

    scores: npt.NDArray[np.float64]
    ranked: npt.NDArray[np.int64]
    model_version: str
    backend: str
    variant: str
    unknown_product_ids: list[str]
    # Seconds spent per stage, for the metrics (features, predict, rank).
    stage_seconds: dict[str, float]
