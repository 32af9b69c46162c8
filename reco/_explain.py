"""Explanations: per-feature contributions from LightGBM's own booster, built once at load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reco._backends import open_booster

EXPLAIN_TOP = 3


@dataclass(frozen=True)
class Contribution:
    """One feature's share of a row's score (log-odds), with the feature's value."""

    feature: str
    value: float
    contribution: float


class Explainer:
    """LightGBM's pred_contrib over the model text verified at load (about a hundred times
    slower than the compiled model, so only for callers who ask; the server builds one only
    with --explain). Raises BackendUnavailableError when LightGBM cannot load the text."""

    def __init__(self, model_text: str, feature_names: Sequence[str]) -> None:
        self._booster = open_booster(model_text=model_text)
        self.feature_names = tuple(feature_names)

    def contributions(self, rows: npt.NDArray[np.float32]) -> list[list[Contribution]]:
        """The EXPLAIN_TOP largest contributions of each row, largest magnitude first."""
        if not len(rows):
            return []
        contrib = np.asarray(self._booster.predict(rows, pred_contrib=True, num_threads=1))
        names = self.feature_names
        out = []
        for row, values in zip(rows, contrib[:, :-1], strict=True):
            top = np.argsort(-np.abs(values))[:EXPLAIN_TOP]
            out.append([Contribution(names[j], float(row[j]), float(values[j])) for j in top])
        return out
