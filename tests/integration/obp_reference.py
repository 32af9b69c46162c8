"""Run by Open Bandit Pipeline's own interpreter (its venv): IPW, SNIPW and DR of a logged
item-position data set given as an .npz, printed as JSON. Imports only obp and numpy."""

from __future__ import annotations

import json
import sys

import numpy as np
from obp.ope import (
    DoublyRobust,
    InverseProbabilityWeighting,
    OffPolicyEvaluation,
    SelfNormalizedInverseProbabilityWeighting,
)


def main(path: str) -> None:
    data = np.load(path)
    n_actions, len_list = int(data["n_actions"]), int(data["len_list"])
    rounds = len(data["action"])
    feedback = {
        "n_rounds": rounds,
        "context": np.zeros((rounds, 1)),
        "action": data["action"],
        "reward": data["reward"],
        "position": data["position"],
        "pscore": data["pscore"],
    }
    # the deterministic target: in every slot p of round r's response, its product targets[., p]
    action_dist = np.zeros((rounds, n_actions, len_list))
    targets = data["targets"][data["rows"]]
    for p in range(len_list):
        action_dist[np.arange(rounds), targets[:, p], p] = 1.0
    ope = OffPolicyEvaluation(
        bandit_feedback=feedback,
        ope_estimators=[
            InverseProbabilityWeighting(),
            SelfNormalizedInverseProbabilityWeighting(),
            DoublyRobust(),
        ],
    )
    estimates = ope.estimate_policy_values(
        action_dist=action_dist, estimated_rewards_by_reg_model=data["q"]
    )
    print(json.dumps({name: float(value) for name, value in estimates.items()}))


if __name__ == "__main__":
    main(sys.argv[1])
