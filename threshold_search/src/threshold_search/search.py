"""`search`: thresholds for one budget or a sweep of budgets, by GA, geometric or exhaustive."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from threshold_search.budget import format_macs, parse_budget
from threshold_search.criteria import check_criterion
from threshold_search.evaluate import Evaluator, correct_per_sample, evaluate, evaluator
from threshold_search.exhaustive import exhaustive_search
from threshold_search.genetic import GeneScorer, genetic_search
from threshold_search.geometric import PathSolution, geometric_all_sizes, geometric_path
from threshold_search.grid import decode, encode, level_grids
from threshold_search.rule import EXIT_RULE, LEGACY_RULE, to_exit_rule
from threshold_search.trajectories import Trajectories

METHODS = ("ga", "geometric", "exhaustive")
_ROUNDS, _POINTS = 7, 8  # geometric bisection: 7 rounds of 8 splits narrow the ratio to ~1e-7


def _threshold_to_json(value: float):
    # JSON has no infinities; "-inf" (never chosen / always exit) and "inf" stay readable.
    return str(value) if math.isinf(value) else value


@dataclass(frozen=True)
class Result:
    """Thresholds found for one budget and what they achieve on the searched data."""

    thresholds: np.ndarray  # (T-1, K) eta
    accuracy: float
    macs: float  # mean MACs per sample; <= budget
    budget: float
    method: str
    criterion: str
    seed: int
    sizes: tuple[int, ...]
    evaluations: int = 0  # threshold sets scored for this budget
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def evaluate_on(self, traj: Trajectories) -> tuple[float, float]:
        """(accuracy, mean MACs) of these thresholds on other data, e.g. a test split."""
        self._check_sizes(traj)
        return evaluate(traj, self.thresholds, self.criterion, self.seed)

    def correct_on(self, traj: Trajectories) -> np.ndarray:
        """(N,) bool: which samples of `traj` these thresholds classify right (paired comparisons)."""
        self._check_sizes(traj)
        return correct_per_sample(traj, self.thresholds, self.criterion, self.seed)

    def _check_sizes(self, traj: Trajectories) -> None:
        if tuple(int(s) for s in traj.sizes) != self.sizes:
            raise ValueError(f"traj: sizes {traj.sizes.tolist()} differ from the searched {list(self.sizes)}")

    def to_dict(self) -> dict:
        """JSON-ready; infinite thresholds are written as the strings "-inf" / "inf", and `rule`
        says which comparison they mean (threshold_search.rule)."""
        return dict(budget=self.budget, accuracy=self.accuracy, macs=self.macs, method=self.method,
                    criterion=self.criterion, seed=self.seed, sizes=list(self.sizes), rule=EXIT_RULE,
                    thresholds=[[_threshold_to_json(v) for v in row] for row in self.thresholds.tolist()],
                    evaluations=self.evaluations, seconds=self.seconds, details=self.details)

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        """A `to_dict()`; one written without a `rule` (before it existed) meant c > eta and is
        converted to the same decisions under c >= eta."""
        thresholds = to_exit_rule([[float(v) for v in row] for row in data["thresholds"]],
                                  data.get("rule", LEGACY_RULE))
        fields = {k: data[k] for k in ("accuracy", "macs", "budget", "method", "criterion", "seed")}
        return cls(thresholds=thresholds.reshape(-1, len(data["sizes"])), sizes=tuple(data["sizes"]),
                   evaluations=data.get("evaluations", 0), seconds=data.get("seconds", 0.0),
                   details=data.get("details", {}), **fields)


@dataclass(frozen=True)
class Front:
    """Results of a budget sweep, in ascending budget: the accuracy-vs-MACs curve."""

    results: tuple[Result, ...]

    @property
    def budgets(self) -> np.ndarray:
        return np.array([r.budget for r in self.results])

    @property
    def accuracy(self) -> np.ndarray:
        return np.array([r.accuracy for r in self.results])

    @property
    def macs(self) -> np.ndarray:
        return np.array([r.macs for r in self.results])

    def to_dict(self) -> dict:
        return dict(results=[r.to_dict() for r in self.results])


def search(traj: Trajectories, budget=None, *, budgets=None, method: str = "ga",
           criterion: str = "confidence", seed: int = 0, **options) -> Result | Front:
    """Thresholds maximising accuracy on `traj` with mean MACs within budget.

    Give `budget` (a number or "1.5G") for one Result, or `budgets=[...]` for a Front; a sweep
    shares the sorted data, the evaluation cache and the geometric seeds across budgets, and
    warm-starts each GA from the solution of the next smaller budget.

    Options: method="ga": intervals=64 (quantile grid), population=40, generations=40,
    mutation_probability=0.15, elitism=4, refine_passes=4, refine_starts=4. method="geometric": size (one patch
    side; default: the best of all sizes), rounds=7, points=8. method="exhaustive":
    intervals=8, max_sets=200000.
    """
    if not isinstance(traj, Trajectories):
        raise TypeError(f"traj: expected Trajectories, got {type(traj).__name__}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    check_criterion(criterion)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed: expected an integer in [0, 2**32), got {seed!r}")
    if (budget is None) == (budgets is None):
        raise TypeError("search: give exactly one of budget=... or budgets=[...]")
    if isinstance(budgets, (str, bytes, int, float)):
        raise TypeError(f"budgets: expected a list of budgets, got {budgets!r}; use budget= for one")
    wanted = [budget] if budgets is None else list(budgets)
    if not wanted:
        raise ValueError("budgets: expected at least one budget")
    parsed = sorted({parse_budget(b) for b in wanted})
    glance = float(traj.macs[0])
    if parsed[0] < glance:
        raise ValueError(f"budget: {format_macs(parsed[0])} MACs is below the glance cost "
                         f"{format_macs(glance)}; no threshold set can meet it")
    ev = evaluator(traj, criterion, int(seed))
    sizes = tuple(int(s) for s in traj.sizes)
    if traj.T == 1:  # no decisions to make: everyone exits at the glance
        eta = np.empty(traj.eta_shape)
        results = [_result(ev, eta, b, method, 0.0, criterion=criterion, seed=int(seed), sizes=sizes)
                   for b in parsed]
        return results[0] if budgets is None else Front(tuple(results))
    run = {"ga": _genetic, "geometric": _geometric, "exhaustive": _exhaustive}[method]
    results = run(ev, parsed, criterion=criterion, seed=int(seed), sizes=sizes, **options)
    return results[0] if budgets is None else Front(tuple(results))


def _result(ev: Evaluator, eta: np.ndarray, budget: float, method: str, seconds: float, **common) -> Result:
    accuracy, macs = ev.evaluate(eta)
    if macs > budget:  # every method guarantees this; reaching here is a bug, not a user error
        raise RuntimeError(f"{method} exceeded the budget on the searched data: {macs} > {budget}")
    return Result(thresholds=eta, accuracy=accuracy, macs=macs, budget=budget, method=method,
                  seconds=seconds, **common)


def _best_path(solutions: list[PathSolution]) -> PathSolution:
    return max(solutions, key=lambda s: (s.accuracy, -s.macs))


def _per_size(solutions: list[PathSolution], sizes) -> list[dict]:
    return [dict(size=sizes[s.size_index], accuracy=s.accuracy, macs=s.macs,
                 thresholds=[[_threshold_to_json(v) for v in row] for row in s.thresholds.tolist()])
            for s in solutions]


def _geometric(ev: Evaluator, budgets, *, criterion, seed, sizes, size=None, rounds=_ROUNDS, points=_POINTS):
    if size is not None and size not in sizes:
        raise ValueError(f"size: {size!r} is not one of the candidate sizes {list(sizes)}")
    results = []
    for budget in budgets:
        started = time.perf_counter()
        if size is None:
            solutions = geometric_all_sizes(ev, budget, rounds=rounds, points=points)
        else:
            solutions = [geometric_path(ev, budget, sizes.index(size), rounds=rounds, points=points)]
        best = _best_path(solutions)
        results.append(_result(ev, best.thresholds, budget, "geometric", time.perf_counter() - started,
                               criterion=criterion,
                               seed=seed, sizes=sizes, evaluations=len(solutions) * (2 + rounds * points),
                               details=dict(size=sizes[best.size_index], per_size=_per_size(solutions, sizes))))
    return results


def _genetic(ev: Evaluator, budgets, *, criterion, seed, sizes, intervals=64, **ga_options):
    started = time.perf_counter()
    # Seeds first: their thresholds join the grid so the GA can represent them exactly.
    geometric = {budget: geometric_all_sizes(ev, budget, rounds=_ROUNDS, points=_POINTS) for budget in budgets}
    geometric_sets = ev.K * (2 + _ROUNDS * _POINTS)  # scored per budget to seed it
    seed_etas = np.stack([s.thresholds for solutions in geometric.values() for s in solutions])
    grids = level_grids(ev.node_scores.T, ev.T, ev.K, intervals, extra=seed_etas)
    scorer = GeneScorer(ev, grids)
    setup_seconds = time.perf_counter() - started  # shared work, charged to the first budget
    results, previous = [], None
    for budget in budgets:
        started = time.perf_counter() - (setup_seconds if not results else 0.0)
        before = scorer.evaluated
        seeds = encode(np.stack([s.thresholds for s in geometric[budget]]), grids)
        if previous is not None:  # feasible here too: budgets ascend
            seeds = np.concatenate([seeds, previous[None]])
        previous = genetic_search(scorer, budget, seeds, seed=seed, **ga_options)
        best_geometric = _best_path(geometric[budget])
        results.append(_result(ev, decode(previous[None], grids, ev.K)[0], budget, "ga",
                               time.perf_counter() - started,
                               criterion=criterion, seed=seed, sizes=sizes,
                               evaluations=scorer.evaluated - before + geometric_sets,
                               details=dict(geometric_accuracy=best_geometric.accuracy,
                                            geometric_size=sizes[best_geometric.size_index])))
    return results


def _exhaustive(ev: Evaluator, budgets, *, criterion, seed, sizes, intervals=8, max_sets=200_000):
    started = time.perf_counter()
    grids = level_grids(ev.node_scores.T, ev.T, ev.K, intervals)
    scorer = GeneScorer(ev, grids)
    best = exhaustive_search(scorer, budgets, max_sets=max_sets)
    seconds = time.perf_counter() - started  # one enumeration serves every budget
    return [_result(ev, decode(genes[None], grids, ev.K)[0], budget, "exhaustive", seconds,
                    criterion=criterion, seed=seed, sizes=sizes, evaluations=scorer.evaluated)
            for budget, genes in zip(budgets, best)]
