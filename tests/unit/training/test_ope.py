"""OPE against a known answer: slates logged by epsilon-greedy under the simulator's
position-based click model, a different target policy, its true click rate computed exactly."""

from __future__ import annotations

import numpy as np

from training.behaviour import EXAMINATION
from training.ope import LoggedSlates, effective_sample_size, estimate

K = 4


def simulated(
    seed: int, n: int = 6000, m: int = 12, epsilon: float = 0.5
) -> tuple[LoggedSlates, float, float]:
    """(the log, the target's true CTR per slot, the logging policy's true CTR per slot)."""
    rng = np.random.default_rng(seed)
    exam = np.asarray(EXAMINATION[:K])
    relevance = 1 / (1 + np.exp(-(rng.normal(-1.2, 1.0, (n, m)))))
    logging_score = relevance + rng.normal(0, 0.25, (n, m))  # an imperfect logging model
    target_score = relevance + rng.normal(0, 0.1, (n, m))  # a better one
    greedy = np.argsort(-logging_score, axis=1)[:, :K]
    target = np.argsort(-target_score, axis=1)[:, :K]
    explore = rng.random(n) < epsilon
    random_slates = np.argsort(rng.random((n, m)), axis=1)[:, :K]
    logged = np.where(explore[:, None], random_slates, greedy)
    propensity = epsilon / m + (1 - epsilon) * (logged == greedy)
    rows = np.arange(n)[:, None]
    clicks = (rng.random((n, K)) < exam * relevance[rows, logged]).astype(np.float64)
    # a deliberately rough reward model: the target's score, clipped, times examination
    q = np.clip(target_score, 0.01, 0.99)
    slates = LoggedSlates(
        logged=logged, target=target, mask=np.ones((n, K), bool), propensity=propensity,
        clicks=clicks, q_logged=q[rows, logged] * exam, q_target=q[rows, target] * exam,
        cluster=np.arange(n) // 3,  # three responses per session
    )  # fmt: skip
    truth = float((exam * relevance[rows, target]).mean())
    logged_truth = float((exam * relevance[rows, logged]).mean())
    return slates, truth, logged_truth


def test_estimates_cover_the_true_click_rate_of_the_target() -> None:
    slates, truth, logged_truth = simulated(seed=7)
    estimates = estimate(slates, resamples=400)
    for name in ("IPS", "SNIPS", "DR"):
        assert estimates[name].covers(truth), (name, estimates[name], truth)
    # and the log itself says something else: the target is clearly better than what was shown
    assert truth > logged_truth + 0.02
    assert not estimates["DR"].covers(logged_truth)
    assert estimates["DR"].high - estimates["DR"].low < estimates["IPS"].high - estimates["IPS"].low
    assert 0 < effective_sample_size(slates) < slates.mask.sum()


def test_a_target_the_log_never_tried_is_flagged_by_its_effective_size() -> None:
    slates, _, _ = simulated(seed=3, epsilon=0.0)
    never = LoggedSlates(**{**slates.__dict__, "target": (slates.logged + 1) % 12})
    assert effective_sample_size(never) == 0.0
