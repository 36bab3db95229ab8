"""Every threshold set on a quantile grid: the exact optimum for small T and K (the test oracle)."""
from __future__ import annotations

import numpy as np

from threshold_search.genetic import GeneScorer, budget_fitness
from threshold_search.grid import decode

_CHUNK = 4096  # sets per evaluate_many call: big enough to amortise, small enough for memory


def exhaustive_search(scorer: GeneScorer, budgets, *, max_sets: int = 200_000) -> list[np.ndarray]:
    """The fittest feasible gene vector for each budget (first in enumeration order on ties).

    One enumeration serves all budgets: a set's accuracy and cost do not depend on the budget.
    """
    sizes = scorer.grid_sizes
    total = int(np.prod(sizes.astype(object)))  # exact even where int64 would overflow
    if total > max_sets:
        raise ValueError(f"max_sets: exhaustive search would score {total} threshold sets (more than "
                         f"max_sets={max_sets}); use fewer intervals or method='ga'")
    K, N = scorer.evaluator.K, scorer.evaluator.N
    best = [None] * len(budgets)
    best_fitness = np.full(len(budgets), -np.inf)
    for start in range(0, total, _CHUNK):
        genes = np.stack(np.unravel_index(np.arange(start, min(start + _CHUNK, total)), sizes), axis=1)
        # Not through the memo: every set is new, and keeping them all would only cost memory.
        accuracy, macs = scorer.evaluator.evaluate_many(decode(genes, scorer.grids, K))
        for b, budget in enumerate(budgets):
            fitness = budget_fitness(accuracy, macs, budget, N)
            index = int(np.argmax(fitness))
            if fitness[index] > best_fitness[b]:
                best[b], best_fitness[b] = genes[index], fitness[index]
    scorer.evaluated += total
    return best
