"""Candidate thresholds per level: quantiles of the scores that level sees.

The GA and the exhaustive search both choose each eta[t-1, k] from the candidates of level t,
so a threshold set is a vector of small integers (a gene per threshold). Quantiles put the
candidates where the samples are, and always-exit / never-exit are expressible: -inf (the first
candidate) lets every score through, inf (the last) none. Candidates are actual scores, and the
exit rule is c >= eta (threshold_search.rule), so a candidate lets its own score through: a tie
at the top, such as the samples a saturated model scores exactly 1.0, can leave on its own.
"""
from __future__ import annotations

import numpy as np

from threshold_search.tree import level_offset


def level_grids(scores: np.ndarray, T: int, K: int, intervals: int,
                extra: np.ndarray | None = None) -> list[np.ndarray]:
    """Ascending float64 candidates for each level t = 1..T-1, the first one -inf, the last inf.

    `intervals` splits [0, 1] into equal quantile steps, so grids of `intervals` = n and m*n
    nest: every candidate of the coarse one is on the fine one. `extra` (P, T-1, K) adds
    thresholds that must be representable exactly (e.g. the geometric solutions).
    """
    if not isinstance(intervals, (int, np.integer)) or intervals < 1:
        raise ValueError(f"intervals: expected a positive integer, got {intervals!r}")
    probabilities = np.linspace(0.0, 1.0, intervals + 1)
    grids = []
    for t in range(1, T):
        pooled = scores[:, level_offset(t, K):level_offset(t + 1, K)].ravel()
        values = [np.quantile(pooled, probabilities, method="lower").astype(np.float64), [-np.inf, np.inf]]
        if extra is not None:
            values.append(np.asarray(extra, dtype=np.float64)[:, t - 1, :].ravel())
        grids.append(np.unique(np.concatenate(values)))
    return grids


def decode(genes: np.ndarray, grids: list[np.ndarray], K: int) -> np.ndarray:
    """(P, (T-1)*K) candidate indices -> (P, T-1, K) thresholds."""
    genes = np.asarray(genes, dtype=np.int64).reshape(len(genes), len(grids), K)
    etas = np.empty(genes.shape, np.float64)
    for t, grid in enumerate(grids):
        etas[:, t, :] = grid[genes[:, t, :]]
    return etas


def encode(etas: np.ndarray, grids: list[np.ndarray]) -> np.ndarray:
    """(P, T-1, K) thresholds that lie on the grids -> (P, (T-1)*K) candidate indices."""
    etas = np.asarray(etas, dtype=np.float64)
    genes = np.empty(etas.shape, np.int64)
    for t, grid in enumerate(grids):
        index = np.searchsorted(grid, etas[:, t, :])
        index = np.minimum(index, grid.size - 1)
        if not np.array_equal(grid[index], etas[:, t, :]):
            raise ValueError(f"etas: level {t + 1} has thresholds that are not grid candidates")
        genes[:, t, :] = index
    return genes.reshape(len(etas), -1)
