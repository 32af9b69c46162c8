"""Settings of the training commands and their documented defaults (light: no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROWS = 15_000
DEFAULT_SEED = 7
DEFAULT_PRODUCTS = 200
DEFAULT_THRESHOLD = 0.7
DEFAULT_THREADS = 2  # fixed, so a retrain on the same data gives the same model.txt
DEFAULT_MAX_BAD_FRACTION = 0.5


@dataclass(frozen=True)
class GenerationSettings:
    """What `generate` writes."""

    rows: int
    seed: int
    out_dir: Path
    n_products: int = DEFAULT_PRODUCTS
    notebook: bool = False  # also write sessions.csv in the notebook's schema
    progress: bool = True

    def __post_init__(self) -> None:
        if self.rows <= 0:
            raise ValueError(f"rows must be positive, got {self.rows}")


@dataclass(frozen=True)
class BusinessAssumptions:
    """The projection's inputs (CLI flags): traffic, slots and the value of one click."""

    sessions_per_day: float = 100_000
    recs_per_session: float = 3
    value_per_click: float = 5.0


@dataclass(frozen=True)
class TrainSettings:
    """Everything `train` needs (the CLI builds this from flags and environment variables)."""

    data: Path
    out: Path
    threshold: float = DEFAULT_THRESHOLD
    num_threads: int = DEFAULT_THREADS
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
    business: BusinessAssumptions = field(default_factory=BusinessAssumptions)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.num_threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.num_threads}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
