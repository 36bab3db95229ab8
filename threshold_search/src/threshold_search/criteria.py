"""Exit criteria: the per-node score that Eq. 9 compares with the thresholds.

Every criterion is turned into a score where larger means "more sure, exit earlier", so one
exit rule serves all of them: `confidence` is the max softmax itself, `entropy` is the negated
entropy (thresholds are then negative numbers), and `random` is a uniform draw per sample and
node (the paper's ablation: exits that ignore the prediction). Random scores come from `seed`,
so the same seed gives the same exits.
"""
from __future__ import annotations

import numpy as np

from threshold_search.trajectories import Trajectories

CRITERIA = ("confidence", "entropy", "random")


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: expected one of {', '.join(CRITERIA)}, got {criterion!r}")
    return criterion


def exit_scores(traj: Trajectories, criterion: str = "confidence", seed: int = 0) -> np.ndarray:
    """float32 (N, M) scores; a sample exits at a node when its score beats the level's max threshold."""
    check_criterion(criterion)
    if criterion == "confidence":
        return traj.conf
    if criterion == "entropy":
        if traj.entropy is None:
            raise ValueError("criterion: 'entropy' needs the optional 'entropy' field in the trajectories")
        return -traj.entropy
    return np.random.default_rng(seed).random(traj.conf.shape, dtype=np.float32)
