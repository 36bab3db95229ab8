"""Genetic search over grid thresholds with pygad, a budget repair step and a final
deterministic coordinate ascent.

A candidate is a gene vector: one index per threshold eta[t-1, k] into the candidates of level
t (see grid.py). Fitness is the accuracy on the searched data, with a tie-break below 1/N that
prefers the cheaper of two equally accurate sets; candidates over budget never survive a
generation because the repair step (after crossover and mutation) lowers all their thresholds
by the fewest grid steps that bring the cost within budget. Lowering every threshold to -inf
sends everyone out at the glance, which is within any valid budget, so repair always succeeds.
"""
from __future__ import annotations

import numpy as np
import pygad

from threshold_search.evaluate import Evaluator
from threshold_search.grid import decode


def budget_fitness(accuracy, macs, budget: float, n_samples: int) -> np.ndarray:
    """Accuracy plus a tie-break below 1/N for the cheaper set; over budget ranks below every
    feasible set (less over budget first)."""
    tie_break = 0.5 / n_samples * (1.0 - macs / budget)
    return np.where(macs <= budget, accuracy + tie_break, -macs / budget)


class GeneScorer:
    """Memoised (accuracy, MACs) of gene vectors; one cache serves every budget of a sweep."""

    def __init__(self, evaluator: Evaluator, grids: list[np.ndarray]):
        self.evaluator, self.grids = evaluator, grids
        self.grid_sizes = np.repeat([grid.size for grid in grids], evaluator.K)
        self.cache: dict[bytes, tuple[float, float]] = {}
        self.evaluated = 0  # threshold sets actually scored (cache misses)

    def __call__(self, genes) -> tuple[np.ndarray, np.ndarray]:
        genes = np.ascontiguousarray(genes, dtype=np.int64)
        keys = [row.tobytes() for row in genes]
        missing = {key: row for key, row in zip(keys, genes) if key not in self.cache}
        if missing:
            rows = np.stack(list(missing.values()))
            accuracy, macs = self.evaluator.evaluate_many(decode(rows, self.grids, self.evaluator.K))
            self.cache.update(zip(missing, zip(accuracy.tolist(), macs.tolist())))
            self.evaluated += len(rows)
        values = np.array([self.cache[key] for key in keys]).reshape(len(keys), 2)
        return values[:, 0], values[:, 1]

    def fitness(self, genes, budget: float) -> np.ndarray:
        accuracy, macs = self(genes)
        return budget_fitness(accuracy, macs, budget, self.evaluator.N)

    def repair(self, genes, budget: float) -> np.ndarray:
        """Shift each over-budget vector down by the fewest grid steps that make it feasible."""
        genes = np.array(genes, dtype=np.int64)
        _, macs = self(genes)
        bad = np.flatnonzero(macs > budget)
        if bad.size == 0:
            return genes
        low = np.zeros(bad.size, np.int64)  # known infeasible shift
        high = np.full(bad.size, int(self.grid_sizes.max()) - 1)  # all -inf: known feasible
        while True:
            open_ = np.flatnonzero(high - low > 1)
            if open_.size == 0:
                break
            middle = (low[open_] + high[open_]) // 2
            _, macs = self(np.maximum(genes[bad[open_]] - middle[:, None], 0))
            feasible = macs <= budget
            high[open_[feasible]] = middle[feasible]
            low[open_[~feasible]] = middle[~feasible]
        genes[bad] = np.maximum(genes[bad] - high[:, None], 0)
        return genes


def _initial_population(scorer: GeneScorer, seeds: np.ndarray, size: int, budget: float,
                        rng: np.random.Generator) -> np.ndarray:
    """The seeds, perturbed copies of them and uniform random vectors, all repaired."""
    seeds = np.unique(np.asarray(seeds, dtype=np.int64), axis=0)[:size]
    fill = size - len(seeds)
    perturbed = seeds[rng.integers(0, len(seeds), fill // 2)]
    perturbed = perturbed + rng.integers(-3, 4, perturbed.shape) * (rng.random(perturbed.shape) < 0.3)
    uniform = rng.integers(0, scorer.grid_sizes, (fill - fill // 2, len(scorer.grid_sizes)))
    population = np.concatenate([seeds, np.clip(perturbed, 0, scorer.grid_sizes - 1), uniform])
    return scorer.repair(population, budget)


def genetic_search(scorer: GeneScorer, budget: float, seeds: np.ndarray, *, seed: int = 0,
                   population: int = 40, generations: int = 40, mutation_probability: float = 0.15,
                   elitism: int = 4, refine_passes: int = 4,
                   refine_starts: int = 4) -> np.ndarray:
    """Best gene vector within budget; never worse on the searched data than any of `seeds`."""
    if not isinstance(population, int) or population < 4:
        raise ValueError(f"population: expected an integer >= 4, got {population!r}")
    if not isinstance(generations, int) or generations < 1:
        raise ValueError(f"generations: expected an integer >= 1, got {generations!r}")
    if not 0.0 <= mutation_probability <= 1.0:
        raise ValueError(f"mutation_probability: expected a value in [0, 1], got {mutation_probability!r}")
    if not isinstance(elitism, int) or not 1 <= elitism < population:
        raise ValueError(f"elitism: expected an integer in [1, population), got {elitism!r}")
    if not isinstance(refine_passes, int) or refine_passes < 0:
        raise ValueError(f"refine_passes: expected an integer >= 0, got {refine_passes!r}")
    if not isinstance(refine_starts, int) or refine_starts < 1:
        raise ValueError(f"refine_starts: expected an integer >= 1, got {refine_starts!r}")
    rng = np.random.default_rng(seed)
    initial = _initial_population(scorer, seeds, population, budget, rng)
    sizes = scorer.grid_sizes

    def fitness(ga, solutions, indices):
        return scorer.fitness(solutions, budget).tolist()

    def mutate(offspring, ga):
        # Half the mutated genes step to a nearby candidate, half jump anywhere on the grid.
        draw = ga.numpy_random_generator
        offspring = np.array(offspring, dtype=np.int64)
        chosen = draw.random_sample(offspring.shape) < mutation_probability
        local = draw.random_sample(offspring.shape) < 0.5
        step = draw.randint(1, 4, offspring.shape) * np.where(draw.random_sample(offspring.shape) < 0.5, -1, 1)
        jump = (draw.random_sample(offspring.shape) * sizes).astype(np.int64)
        mutated = np.where(local, np.clip(offspring + step, 0, sizes - 1), jump)
        return np.where(chosen, mutated, offspring)

    def repair(ga, offspring):
        return scorer.repair(np.asarray(offspring, dtype=np.int64), budget)

    ga = pygad.GA(
        num_generations=generations,
        num_parents_mating=max(2, population // 2),
        fitness_func=fitness,
        fitness_batch_size=population,  # one vectorised evaluate_many per generation
        initial_population=initial,
        gene_type=int,
        gene_space=[range(int(n)) for n in sizes],
        parent_selection_type="tournament",
        K_tournament=3,
        keep_elitism=elitism,
        crossover_type="uniform",
        mutation_type=mutate,
        on_mutation=repair,
        random_seed=int(seed),
        suppress_warnings=True,
    )
    ga.run()
    # Refine the fittest few distinct finalists, not just the best: the best after local search
    # is often a runner-up of the GA (the budget couples the thresholds, so single-threshold
    # moves get stuck at different points from different starts).
    fitness = np.asarray(ga.last_generation_fitness, dtype=np.float64)
    ranked = np.asarray(ga.population, dtype=np.int64)[np.argsort(-fitness, kind="stable")]
    finalists = ranked[np.sort(np.unique(ranked, axis=0, return_index=True)[1])][:refine_starts]
    refined = np.stack([coordinate_ascent(scorer, genes, budget, passes=refine_passes) for genes in finalists])
    return refined[int(np.argmax(scorer.fitness(refined, budget)))]


def coordinate_ascent(scorer: GeneScorer, genes: np.ndarray, budget: float, *,
                      passes: int = 4) -> np.ndarray:
    """Deterministic refinement: for each threshold in turn, try every candidate with the
    others fixed and keep the fittest feasible one; stop after a pass that changes nothing."""
    current = np.array(genes, dtype=np.int64)
    current_fitness = scorer.fitness(current[None], budget)[0]
    for _ in range(passes):
        changed = False
        for gene, size in enumerate(scorer.grid_sizes):
            trials = np.repeat(current[None], size, axis=0)
            trials[:, gene] = np.arange(size)
            fitness = scorer.fitness(trials, budget)
            best = int(np.argmax(fitness))
            if fitness[best] > current_fitness:
                current, current_fitness, changed = trials[best], fitness[best], True
        if not changed:
            break
    return current
