"""Settings of the training commands and their documented defaults (light: no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROWS = 15_000
DEFAULT_SEED = 7
DEFAULT_PRODUCTS = 200
MAX_PRODUCTS = 1_000_000  # the largest catalog the generator makes (training/products.py)
DEFAULT_THRESHOLD = 0.7
DEFAULT_THREADS = 2  # fixed, so a retrain on the same data gives the same model.txt
DEFAULT_MAX_BAD_FRACTION = 0.5
# Related products each product keeps in the bundle's sparse affinity table (reco.SparseAffinity):
# enough that the default 200-product catalog keeps every co-viewed pair.
DEFAULT_AFFINITY_TOP_K = 200
# Feature sets and splits a user may ask for (training/features.py, training/split.py).
FEATURE_SET_CHOICES = ("candidate", "sequence")
# What impressions train when no --feature-set is given (notebook rows train "session"): the
# sequence set, the one that meets issue 12's targets on the default run (docs/evaluation.md).
DEFAULT_IMPRESSIONS_FEATURE_SET = "sequence"
SPLIT_CHOICES = ("session", "time")
CALIBRATION_CHOICES = ("auto", "platt", "none")


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
    # None: what the data's schema trains (impressions: "sequence", notebook rows: "session")
    feature_set: str | None = None
    split: str = "session"
    calibration: str = "auto"  # auto: a Platt step only where validation shows it is material
    # The business illustration is left out of reports on generated data unless asked for.
    business_projection: bool = False
    # Train on the candidate's own features only (training/features.py, mask_context).
    context_free: bool = False
    # Each product's strongest related products kept in the bundle (the rest read as 0).
    affinity_top_k: int = DEFAULT_AFFINITY_TOP_K

    def __post_init__(self) -> None:
        if self.affinity_top_k < 1:
            raise ValueError(f"affinity_top_k must be at least 1, got {self.affinity_top_k}")
        if self.feature_set is not None and self.feature_set not in FEATURE_SET_CHOICES:
            raise ValueError(
                f"feature_set must be one of {list(FEATURE_SET_CHOICES)}, got {self.feature_set!r}"
            )
        if self.split not in SPLIT_CHOICES:
            raise ValueError(f"split must be one of {list(SPLIT_CHOICES)}, got {self.split!r}")
        if self.calibration not in CALIBRATION_CHOICES:
            raise ValueError(
                f"calibration must be one of {list(CALIBRATION_CHOICES)}, got {self.calibration!r}"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.num_threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.num_threads}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
