"""Level-order indexing of the tree of size paths (see README: "Trajectory file").

Level t = 1..T holds K^(t-1) nodes; the glance is node 0. Within level t the path of size
indices (k_2, ..., k_t) sits at offset(t) + sum_j k_j K^(t-j), so the children of the node at
local position p of level t are at local positions p*K + k of level t+1.
"""
from __future__ import annotations

from collections.abc import Sequence


def level_offset(t: int, K: int) -> int:
    """Index of the first node of level t (1-based): sum_{s<t} K^(s-1)."""
    return sum(K ** (s - 1) for s in range(1, t))


def level_width(t: int, K: int) -> int:
    """Number of nodes on level t: K^(t-1)."""
    return K ** (t - 1)


def num_nodes(T: int, K: int) -> int:
    """M, the number of nodes of a tree with T levels: sum_{t<=T} K^(t-1)."""
    return level_offset(T + 1, K)


def node_index(path: Sequence[int], K: int) -> int:
    """Node of the path of size indices (k_2, ..., k_t); the empty path is the glance."""
    local = 0
    for k in path:
        if not 0 <= k < K:
            raise ValueError(f"path: size index {k} outside [0, {K})")
        local = local * K + int(k)
    return level_offset(len(path) + 1, K) + local


def child_index(node: int, k: int, K: int) -> int:
    """The node reached from `node` by continuing with size index k."""
    t = node_level(node, K)
    return level_offset(t + 1, K) + (node - level_offset(t, K)) * K + k


def node_level(node: int, K: int) -> int:
    """The level t (1-based) that `node` lies on."""
    t = 1
    while node >= level_offset(t + 1, K):
        t += 1
    return t


def fixed_size_path(T: int, k: int, K: int) -> list[int]:
    """Nodes of the path that uses size index k at every focus step: [glance, (k), (k,k), ...]."""
    return [node_index([k] * (t - 1), K) for t in range(1, T + 1)]
