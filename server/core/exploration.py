"""Exploration: which ranked candidates a Recommend response shows, with each slot's propensity."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
GREEDY = "greedy"


@dataclass(frozen=True, slots=True)
class Choice:
    """The shown positions (into the ranked list's candidates), in slot order, and the
    marginal probability that the policy put each one in its slot."""

    shown: I64
    propensities: F64
    policy: str
    explored: bool = False  # this response drew a random slate (logged, for readouts only)


class Explorer:
    """Slate-level epsilon-greedy per variant, off by default.

    With probability epsilon a response shows k candidates drawn uniformly without replacement
    from the eligible ones (those past the threshold and the category cap), in random order;
    otherwise the top k. Every product's marginal probability of being shown in slot j is then
    exact and cheap: (1 - epsilon) x [it is the greedy slot-j product] + epsilon / m, for m
    eligible candidates, which is what an item-position IPS estimator divides by. (A softmax or
    Plackett-Luce policy has no closed-form marginal beyond the first slot.) Deterministic
    given the seed and the order of requests.
    """

    def __init__(self, epsilon: Mapping[str, float] | None = None, seed: int | None = None) -> None:
        self.epsilon = dict(epsilon or {})
        for variant, value in self.epsilon.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"epsilon of variant {variant!r} must be in [0, 1], got {value}")
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # warm-up threads and the event loop may both draw

    def policy(self, variant: str) -> str:
        """How the variant chooses its slates, as the log records it."""
        epsilon = self.epsilon.get(variant, 0.0)
        return GREEDY if epsilon <= 0 else f"epsilon-greedy({epsilon:g})"

    def choose(self, variant: str, ranked: I64, k: int) -> Choice:
        """The slate for `ranked` (eligible positions, best first) cut at k slots."""
        m = len(ranked)
        k = min(k, m)
        greedy = ranked[:k]
        epsilon = self.epsilon.get(variant, 0.0)
        if epsilon <= 0 or m == 0:
            return Choice(greedy, np.ones(k), GREEDY)
        with self._lock:
            explore = self._rng.random() < epsilon
            picked = self._rng.choice(m, size=k, replace=False) if explore else None
        shown = ranked[picked] if picked is not None else greedy
        propensities = np.full(k, epsilon / m) + (1.0 - epsilon) * (shown == greedy)
        return Choice(shown, propensities, self.policy(variant), picked is not None)
