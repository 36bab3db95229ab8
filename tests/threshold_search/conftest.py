"""Shared oracles and data for the threshold_search tests.

`exit_nodes` / `eq9_loop` are the exit rule written the plainest way, one sample and one level at
a time in Python floats, exactly as the issues state it; they share no code with the package.
"""
from __future__ import annotations

import numpy as np
import pytest

from threshold_search import Trajectories


def _offset(t: int, K: int) -> int:
    return sum(K ** (s - 1) for s in range(1, t))


def exit_nodes(traj: Trajectories, eta, scores=None, rule: str = ">=") -> list[int]:
    """The node where each sample leaves, walking it down the tree. rule ">=" is Eq. 9 as the
    package reads it (exit at c >= the largest threshold, else the smallest threshold above c);
    ">" is the strict rule that thresholds stored before carry (exit at c > the largest, else
    the smallest threshold at or above c)."""
    eta = np.asarray(eta, dtype=np.float64)
    scores = traj.conf if scores is None else scores
    K, T = traj.num_sizes, traj.T
    nodes = []
    for i in range(traj.num_samples):
        node, t = 0, 1
        while t < T:
            c = float(scores[i, node])
            row = [float(v) for v in eta[t - 1]]
            if (c >= max(row)) if rule == ">=" else (c > max(row)):
                break
            above = [k for k in range(K) if (row[k] > c if rule == ">=" else row[k] >= c)]
            k = min(above, key=lambda k: (row[k], k))
            node = _offset(t + 1, K) + (node - _offset(t, K)) * K + k
            t += 1
        nodes.append(node)
    return nodes


def eq9_loop(traj: Trajectories, eta, scores=None, rule: str = ">=") -> tuple[float, float]:
    """(accuracy, mean MACs) by walking every sample down the tree."""
    nodes = exit_nodes(traj, eta, scores, rule)
    correct = sum(bool(traj.correct[i, node]) for i, node in enumerate(nodes))
    total_macs = sum(float(traj.macs[node]) for node in nodes)
    return correct / traj.num_samples, total_macs / traj.num_samples


def random_trajectories(rng: np.random.Generator, n: int, T: int, K: int, *, levels: int = 8) -> Trajectories:
    """Unstructured trajectories whose confidences take few distinct values, so thresholds
    drawn from the same values produce ties everywhere."""
    M = _offset(T + 1, K)
    conf = (rng.integers(1, levels + 1, (n, M)) / levels).astype(np.float32)
    labels = rng.integers(0, 5, n)
    pred = rng.integers(0, 5, (n, M))
    macs = np.empty(M)
    macs[0] = rng.uniform(1.0, 2.0)
    for t in range(2, T + 1):
        for local in range(K ** (t - 1)):
            node = _offset(t, K) + local
            macs[node] = macs[_offset(t - 1, K) + local // K] + rng.uniform(0.5, 3.0)
    return Trajectories(sizes=np.arange(1, K + 1) * 32, T=T, labels=labels, conf=conf,
                        correct=pred == labels[:, None], pred=pred, macs=macs,
                        entropy=rng.uniform(0, 2, (n, M)).astype(np.float32))


@pytest.fixture(scope="session")
def oracle():
    return eq9_loop


@pytest.fixture(scope="session")
def make_random():
    return random_trajectories


@pytest.fixture(scope="session")
def walk():
    return exit_nodes
