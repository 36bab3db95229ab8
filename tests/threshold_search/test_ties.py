"""Exits under tied confidences (issue 29), against the official GFNet evaluation code.

`official_thresholds` and `official_exit_steps` restate, in our own words, what
`dynamic_find_threshold` and `dynamic_evaluate` in GFNet-Pytorch's inference.py do with one
path of T exits. They are the oracle; our geometric thresholds are read by the package's own
rule (Evaluator) and by the plain per-sample loop of conftest.py.

One difference is on purpose (threshold_search.geometric): when ties at earlier exits leave
fewer samples running than an exit plans to let go, the official threshold keeps its initial
1e8 and nobody leaves there; ours lets all of them leave. `official_thresholds` reports when
that happens, and the tests compare decisions only where it does not, and test that case alone.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from threshold_search import Result, Trajectories, evaluate, search
from threshold_search.evaluate import Evaluator
from threshold_search.geometric import path_thresholds, planned_fractions
from threshold_search.rule import to_exit_rule

NOBODY, EVERYBODY = np.float32(1e8), np.float32(-1e8)  # the official code's initial / last thresholds


def official_thresholds(scores: np.ndarray, fractions) -> tuple[np.ndarray, bool]:
    """(thresholds (T,) float32, whether an exit found fewer samples running than it planned,
    but some).

    For each exit but the last: plan n = floor(N * fraction). Go through the samples from the
    highest score at this exit down, skipping those already out; the n-th one still running
    gives the threshold. When there is no n-th one (n = 0, or fewer than n running) the
    threshold stays at 1e8. Then everyone scoring >= the threshold is out. The last exit's
    threshold is -1e8: everyone left goes there.
    """
    T, N = scores.shape
    thresholds = np.full(T, NOBODY, dtype=np.float32)
    out = np.zeros(N, dtype=bool)
    short = False
    for t in range(T - 1):
        planned = math.floor(N * fractions[t])
        still = [i for i in np.argsort(-scores[t], kind="stable") if not out[i]]
        if 0 < planned <= len(still):
            thresholds[t] = scores[t, still[planned - 1]]
        elif planned > len(still) > 0:
            short = True
        out |= scores[t] >= thresholds[t]
    thresholds[T - 1] = EVERYBODY
    return thresholds, short


def official_exit_steps(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The 0-based exit of each sample: the first whose threshold its score reaches (>=)."""
    T, N = scores.shape
    return np.array([next(t for t in range(T) if scores[t, i] >= thresholds[t]) for i in range(N)])


def one_path(scores: np.ndarray, seed: int = 0) -> Trajectories:
    """Trajectories of one patch size (nodes = steps) with these (T, N) scores."""
    rng = np.random.default_rng(seed)
    T, N = scores.shape
    labels = rng.integers(0, 3, N)
    pred = rng.integers(0, 3, (N, T))
    return Trajectories(sizes=np.array([96]), T=T, labels=labels, conf=np.ascontiguousarray(scores.T),
                        correct=pred == labels[:, None], pred=pred, macs=np.cumsum(np.full(T, 1e8)))


def saturated(rng: np.random.Generator, T: int, N: int) -> np.ndarray:
    """(T, N) float32 confidences of a confident model: at step t a growing share of them is
    exactly 1.0 (float32 softmax saturates), the rest spread below it, with some smaller ties."""
    scores = rng.choice(np.float32([0.5, 0.75, 0.9]), (T, N)).astype(np.float32)
    spread = rng.random((T, N)) < 0.5
    scores[spread] = rng.uniform(0.3, 0.999, spread.sum()).astype(np.float32)
    for t in range(T):
        scores[t, rng.random(N) < rng.uniform(0.2, 0.4) + 0.5 * t / T] = 1.0
    return scores


def our_exits(traj: Trajectories, split: float, walk) -> tuple[np.ndarray, np.ndarray]:
    """Our geometric thresholds at `split` and the 0-based exit of each sample under them."""
    eta = path_thresholds(traj.conf.T, split, 0, 1)
    return eta, np.array(walk(traj, eta))  # with one size, node t-1 is step t


def test_the_issues_example_lets_the_tie_and_then_the_rest_leave(walk):
    # T=3, 10 samples, a third planned at each exit: 3 at step 1, where 4 sit at exactly 1.0.
    scores = np.float32([[1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                         [0.2, 0.2, 0.2, 0.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                         [0.5] * 10])
    traj = one_path(scores)
    fractions = planned_fractions(0.5, 3)
    assert [math.floor(10 * f) for f in fractions[:2]] == [3, 3]
    thresholds, short = official_thresholds(scores, fractions)
    expected = official_exit_steps(scores, thresholds)
    assert not short and np.bincount(expected, minlength=3).tolist() == [4, 6, 0]
    eta, ours = our_exits(traj, 0.5, walk)
    np.testing.assert_array_equal(ours, expected)
    assert eta[:, 0].tolist() == [1.0, 1.0]
    _, exits = Evaluator(traj).exit_counts(eta[None])  # the package's own reading of them
    assert exits[0].tolist() == [4, 6, 0]
    # The earlier rule, (n+1)-th highest and c > eta, let nobody leave early: the cost the issue saw.
    assert walk(traj, [[1.0], [1.0]], rule=">") == [2] * 10


@pytest.mark.parametrize("T", [3, 4, 6])
def test_saturated_data_our_geometric_exits_are_the_official_ones(T, walk):
    rng = np.random.default_rng(T)
    compared = tied = 0
    for trial in range(12):
        N = int(rng.integers(20, 200))
        scores = saturated(rng, T, N)
        traj = one_path(scores, seed=trial)
        evaluator = Evaluator(traj)
        for split in (0.2, 0.35, 0.5, 0.65, 0.8):
            fractions = planned_fractions(split, T)
            thresholds, short = official_thresholds(scores, fractions)
            eta, ours = our_exits(traj, split, walk)
            counts = np.bincount(ours, minlength=T)
            _, exits = evaluator.exit_counts(eta[None])
            np.testing.assert_array_equal(exits[0], counts)  # vectorised == plain loop, ties included
            # Every exit lets its planned samples leave, or all still running where fewer are.
            running = N
            for t in range(T - 1):
                planned = math.floor(N * fractions[t])
                assert counts[t] >= min(planned, running), (trial, split, t)
                tied += counts[t] > planned
                running -= counts[t]
            official = official_exit_steps(scores, thresholds)
            if short:  # the difference on purpose: those the official code keeps to the end leave earlier
                assert (ours <= official).all() and (ours < official).any()
                continue
            np.testing.assert_array_equal(ours, official)
            compared += 1
    assert compared >= 20 and tied >= 60  # the comparisons ran, on data whose ties mattered


def test_where_the_plan_outruns_the_samples_left_they_leave_instead_of_running_to_the_end(walk):
    # A quarter planned at each of 4 exits (2 of 10); 9 tie at 1.0 and leave at step 1, so
    # step 2 plans 2 where only 1 remains.
    scores = np.float32([[1.0] * 9 + [0.5], [0.6] * 10, [0.7] * 10, [0.8] * 10])
    fractions = planned_fractions(0.5, 4)
    assert [math.floor(10 * f) for f in fractions] == [2, 2, 2, 2]
    thresholds, short = official_thresholds(scores, fractions)
    assert short
    assert official_exit_steps(scores, thresholds).tolist() == [0] * 9 + [3]  # kept to the end
    eta, ours = our_exits(one_path(scores), 0.5, walk)
    assert eta[:, 0].tolist() == [1.0, -np.inf, -np.inf] and ours.tolist() == [0] * 9 + [1]


def test_search_can_let_exactly_a_tie_at_one_leave_and_can_keep_everyone(oracle):
    # T=2: 6 samples sure (1.0) and right at the glance, 4 unsure and only right after the focus.
    scores = np.float32([[1.0] * 6 + [0.6] * 4, [0.9] * 10])
    correct = np.array([[True] * 6 + [False] * 4, [True] * 10]).T
    labels = np.zeros(10, np.int64)
    traj = Trajectories(sizes=np.array([96]), T=2, labels=labels, conf=scores.T.copy(), correct=correct,
                        pred=np.where(correct, 0, 1), macs=np.array([1e8, 2e8]))
    for method in ("exhaustive", "ga", "geometric"):
        result = search(traj, 1.4e8, method=method, **({"generations": 5} if method == "ga" else {}))
        assert (result.accuracy, result.macs) == (1.0, 1.4e8) == oracle(traj, result.thresholds)
    # All sure at the glance and all wrong there: only "nobody exits" (inf) reaches 100%.
    wrong_first = Trajectories(sizes=np.array([96]), T=2, labels=labels, conf=np.ones((10, 2), np.float32),
                               correct=np.array([[False, True]] * 10), pred=np.array([[1, 0]] * 10),
                               macs=np.array([1e8, 2e8]))
    for method in ("exhaustive", "ga"):
        result = search(wrong_first, 2e8, method=method, **({"generations": 5} if method == "ga" else {}))
        assert result.accuracy == 1.0 and result.thresholds[0, 0] == np.inf


def test_results_written_before_the_rule_decide_as_they_did(make_random, oracle):
    rng = np.random.default_rng(5)
    for T, K in [(2, 1), (3, 2), (4, 3)]:
        traj = make_random(rng, 150, T, K)  # few distinct confidences: ties everywhere
        for _ in range(5):
            eta = rng.choice(np.r_[np.unique(traj.conf), -np.inf, np.inf], size=traj.eta_shape)
            stored = search(traj, float(traj.macs.max()), method="geometric").to_dict()
            stored["thresholds"] = [[str(v) if math.isinf(v) else float(v) for v in row] for row in eta]
            del stored["rule"]  # as a Result was written before issue 29
            loaded = Result.from_dict(json.loads(json.dumps(stored)))
            assert evaluate(traj, loaded.thresholds) == pytest.approx(oracle(traj, eta, rule=">"), rel=1e-12)
            assert Result.from_dict(loaded.to_dict()).thresholds.tolist() == loaded.thresholds.tolist()


def test_legacy_conversion_keeps_infinities_and_moves_finite_values_up_one_step():
    converted = to_exit_rule([[-np.inf, 0.5, np.inf]], ">")
    assert converted[0, 0] == -np.inf and converted[0, 2] == np.inf
    assert converted[0, 1] == np.nextafter(0.5, 1.0)
    assert to_exit_rule([[0.5]], ">=")[0, 0] == 0.5
    with pytest.raises(ValueError, match="rule: expected one of"):
        to_exit_rule([[0.5]], "=>")
