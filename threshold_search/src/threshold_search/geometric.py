"""The MSDNet budgeted scheme along one fixed-size path (the baseline, and the GA's seeds).

Exit t of T takes a planned fraction of all samples proportional to r^(t-1) (the issue's
(1-q)^(t-1) q with r = 1 - q, normalised over the T exits as MSDNet's p^t is). Each exit's
threshold is the confidence that lets floor(N * fraction) of the samples still running leave,
highest first; the last exit takes everyone left. Larger r moves exits later and costs more,
so the ratio meeting a budget is found by bisection. MSDNet sweeps p = r up to 1.95: budgets
above the even split need r > 1 (q < 0), which the bisection reaches through s = r / (1 + r)
in [0, 1] (s = 1 is "everyone runs to T").

Thresholds are the n-th highest score among the samples still running, as in the official
GFNet and MSDNet code (`dynamic_find_threshold`), read with its exit rule c >= eta: exactly n
samples leave unless scores tie at the threshold, in which case the whole tie leaves with them.
A saturated model (many confidences exactly 1.0) thus still exits its planned samples. One case
differs from the official code on purpose: where ties at earlier exits left fewer samples running
than an exit plans to let go, the official threshold stays at its "nobody" value and those
samples run to the end; here they all leave at that exit, as the plan asked for more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from threshold_search.evaluate import Evaluator
from threshold_search.tree import fixed_size_path


@dataclass(frozen=True)
class PathSolution:
    """The geometric solution of one fixed size for one budget."""

    size_index: int
    thresholds: np.ndarray  # (T-1, K)
    accuracy: float
    macs: float
    split: float  # s = r / (1 + r) in [0, 1]


def planned_fractions(split: float, T: int) -> np.ndarray:
    """Fractions of all samples planned to leave at exits 1..T: proportional to r^(t-1)."""
    t = np.arange(T)
    weights = split ** t * (1.0 - split) ** (T - 1 - t)
    return weights / weights.sum()


def path_thresholds(path_scores: np.ndarray, split: float, size_index: int, K: int) -> np.ndarray:
    """(T-1, K) thresholds that keep every sample on size `size_index` (others never chosen)."""
    T, N = path_scores.shape
    fractions = planned_fractions(split, T)
    eta = np.full((T - 1, K), -np.inf)
    running = path_scores
    for t in range(T - 1):
        planned = int(np.floor(N * fractions[t]))
        scores = running[t]
        if planned >= scores.size:
            threshold = -np.inf  # everyone still running leaves
        elif planned == 0:
            threshold = np.inf  # nobody leaves; size_index is the only finite choice left
        else:
            threshold = float(-np.partition(-scores, planned - 1)[planned - 1])  # the n-th highest
        eta[t, size_index] = threshold
        running = running[:, scores < threshold]
    return eta


def geometric_path(evaluator: Evaluator, budget: float, size_index: int, *,
                   rounds: int = 7, points: int = 8) -> PathSolution:
    """The largest split found whose realised cost on the evaluator's data is within budget.

    A multi-point bisection: each round scores `points` splits inside the bracket in one
    `evaluate_many` call and keeps the last feasible / first infeasible pair.
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected an integer >= 1, got {rounds!r}")
    if not isinstance(points, int) or points < 1:
        raise ValueError(f"points: expected an integer >= 1, got {points!r}")
    K, T = evaluator.K, evaluator.T
    path_scores = evaluator.node_scores[fixed_size_path(T, size_index, K)]

    def score(splits):
        etas = np.stack([path_thresholds(path_scores, s, size_index, K) for s in splits])
        accuracy, macs = evaluator.evaluate_many(etas)
        return etas, accuracy, macs

    etas, accuracy, macs = score([0.0, 1.0])  # split 0 is the glance alone: always feasible
    best = PathSolution(size_index, etas[0], float(accuracy[0]), float(macs[0]), 0.0)
    if macs[1] <= budget:
        return PathSolution(size_index, etas[1], float(accuracy[1]), float(macs[1]), 1.0)
    low, high = 0.0, 1.0
    for _ in range(rounds):
        splits = np.linspace(low, high, points + 2)[1:-1]
        etas, accuracy, macs = score(splits)
        feasible = macs <= budget
        # Cost grows with the split; take the bracket after the last feasible point.
        last = int(np.flatnonzero(feasible)[-1]) if feasible.any() else -1
        if last >= 0:
            best = PathSolution(size_index, etas[last], float(accuracy[last]), float(macs[last]),
                                float(splits[last]))
            low = splits[last]
        if last + 1 < points:
            high = splits[last + 1]
    return best


def geometric_all_sizes(evaluator: Evaluator, budget: float, **options) -> list[PathSolution]:
    """The geometric solution of every fixed size, in size order."""
    return [geometric_path(evaluator, budget, k, **options) for k in range(evaluator.K)]
