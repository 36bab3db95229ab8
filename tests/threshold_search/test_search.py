"""The searches: budgets respected, GA >= geometric, GA near the exhaustive optimum, determinism."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from threshold_search import Front, Result, Trajectories, make_trajectories, search
from threshold_search.evaluate import Evaluator
from threshold_search.geometric import path_thresholds, planned_fractions

SIZES = [96, 128, 160]


@pytest.fixture(scope="module")
def traj4():
    return make_trajectories(3000, 4, SIZES, seed=5)


@pytest.fixture(scope="module")
def small_ga_sweep(traj4):
    return search(traj4, budgets=["1.2G", "2G", "3G", "4.5G"], method="ga", seed=1,
                  population=24, generations=15)


def _copy(traj):  # a distinct object: no evaluator cache shared with the original
    return Trajectories(sizes=traj.sizes, T=traj.T, labels=traj.labels, conf=traj.conf, correct=traj.correct,
                        pred=traj.pred, macs=traj.macs, entropy=traj.entropy)


def test_geometric_thresholds_follow_the_msdnet_plan():
    # One size, continuous scores (no ties): exit t lets exactly floor(N * fraction_t) leave.
    traj = make_trajectories(1000, 4, [128], seed=3)
    evaluator = Evaluator(traj)
    for split in (0.2, 0.5, 0.7):
        eta = path_thresholds(evaluator.node_scores[[0, 1, 2, 3]], split, 0, 1)
        running = np.ones(traj.num_samples, bool)
        for t, fraction in enumerate(planned_fractions(split, 4)[:-1]):
            leaving = running & (traj.conf[:, t] >= eta[t, 0])
            assert leaving.sum() == int(np.floor(1000 * fraction))
            running &= ~leaving
    fractions = planned_fractions(0.6, 4)
    ratio = 0.6 / 0.4
    np.testing.assert_allclose(fractions[1:] / fractions[:-1], ratio)  # proportional to r^(t-1)


def test_geometric_meets_the_budget_tightly(oracle):
    traj = make_trajectories(2000, 4, [128], seed=4)
    full = traj.macs[-1] - traj.macs[0]
    for budget in (1.5e9, 2.5e9, 3.5e9):
        result = search(traj, budget, method="geometric")
        accuracy, macs = oracle(traj, result.thresholds)
        assert macs <= budget and accuracy == pytest.approx(result.accuracy)
        # Bisection stops within one step of the plan: at most T-1 samples change exits.
        assert budget - macs <= 3 * full / traj.num_samples


def test_geometric_per_size_details(traj4):
    result = search(traj4, "2.5G", method="geometric")
    per_size = result.details["per_size"]
    assert [entry["size"] for entry in per_size] == SIZES
    assert result.accuracy == max(entry["accuracy"] for entry in per_size)
    only = search(traj4, "2.5G", method="geometric", size=128)
    assert only.accuracy == pytest.approx(per_size[1]["accuracy"])
    assert only.macs <= 2.5e9
    with pytest.raises(ValueError, match="size"):
        search(traj4, "2.5G", method="geometric", size=100)


def test_ga_never_below_geometric_and_within_budget(traj4, small_ga_sweep, oracle):
    geometric = search(traj4, budgets=["1.2G", "2G", "3G", "4.5G"], method="geometric")
    for ga, geo in zip(small_ga_sweep.results, geometric.results):
        accuracy, macs = oracle(traj4, ga.thresholds)  # independent of the code under test
        assert accuracy == pytest.approx(ga.accuracy) and macs == pytest.approx(ga.macs)
        assert macs <= ga.budget * (1 + 1e-12)
        assert ga.accuracy >= geo.accuracy
    # On this data the multi-size GA is clearly better somewhere, not just tied.
    assert max(g.accuracy - b.accuracy for g, b in zip(small_ga_sweep.results, geometric.results)) > 0.005


def test_sweep_is_an_ascending_front(small_ga_sweep):
    assert isinstance(small_ga_sweep, Front)
    assert list(small_ga_sweep.budgets) == [1.2e9, 2e9, 3e9, 4.5e9]
    assert (np.diff(small_ga_sweep.accuracy) >= 0).all()  # each budget starts from the previous
    assert (small_ga_sweep.macs <= small_ga_sweep.budgets).all()


@pytest.mark.parametrize("data_seed", [1, 4])
def test_ga_within_0_2_points_of_the_exhaustive_optimum(data_seed):
    traj = make_trajectories(2000, 3, [96, 160], seed=data_seed)
    budgets = [1.2e9, 1.8e9, 2.5e9, 3.5e9]
    # The GA's 64-interval grid contains the exhaustive 16-interval grid.
    exhaustive = search(traj, budgets=budgets, method="exhaustive", intervals=16)
    ga = search(traj, budgets=budgets, method="ga", seed=0)
    assert exhaustive.results[0].evaluations == 19 ** 4  # 17 quantiles, -inf and inf per threshold
    for e, g in zip(exhaustive.results, ga.results):
        assert g.accuracy >= e.accuracy - 0.002 - 1e-12, (e.budget, e.accuracy, g.accuracy)
        assert e.macs <= e.budget and g.macs <= g.budget


def test_exhaustive_is_the_optimum_of_its_grid(oracle):
    traj = make_trajectories(150, 2, [96, 160], seed=8)
    candidates = np.unique(np.r_[-np.inf, np.inf, np.quantile(traj.conf[:, 0], np.linspace(0, 1, 5), method="lower")])
    budget = 2.4e9
    best = max((oracle(traj, np.array([eta])) for eta in itertools.product(candidates, repeat=2)
                if oracle(traj, np.array([eta]))[1] <= budget), key=lambda r: r[0])
    result = search(traj, budget, method="exhaustive", intervals=4)
    assert result.accuracy == pytest.approx(best[0])


@pytest.mark.parametrize("method", ["ga", "geometric", "exhaustive"])
def test_budget_is_never_exceeded(method, oracle):
    traj = make_trajectories(800, 3, [96, 160], seed=9)
    # Just above the glance, exactly at a node's cost, in between, and above everything.
    budgets = [traj.macs[0] * 1.0001, traj.macs[1], 2.2e9, traj.macs[-1] * 2]
    front = search(traj, budgets=budgets, method=method, **({"generations": 10} if method == "ga" else {}))
    for result in front.results:
        _, macs = oracle(traj, result.thresholds)
        assert result.macs <= result.budget and macs <= result.budget * (1 + 1e-12)


def test_same_seed_same_result(traj4):
    options = dict(budgets=["1.5G", "3G"], method="ga", population=16, generations=8)
    first = search(traj4, seed=7, **options)
    again = search(_copy(traj4), seed=7, **options)
    for a, b in zip(first.results, again.results):
        np.testing.assert_array_equal(a.thresholds, b.thresholds)
        assert a.accuracy == b.accuracy and a.macs == b.macs


def test_random_exits_are_worse_than_confidence(traj4):
    confident = search(traj4, "2.5G", method="ga", population=16, generations=8)
    random = search(traj4, "2.5G", method="ga", criterion="random", population=16, generations=8)
    entropy = search(traj4, "2.5G", method="ga", criterion="entropy", population=16, generations=8)
    assert confident.accuracy > random.accuracy + 0.02
    assert entropy.accuracy > random.accuracy + 0.02
    assert entropy.criterion == "entropy" and (entropy.thresholds[np.isfinite(entropy.thresholds)] <= 0).all()


def test_result_json_round_trip(traj4):
    result = search(traj4, "2G", method="geometric")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # strict JSON: no bare infinities
    again = Result.from_dict(data)
    np.testing.assert_array_equal(again.thresholds, result.thresholds)
    assert np.isinf(result.thresholds).any()
    assert again.evaluate_on(traj4) == pytest.approx((result.accuracy, result.macs))


def test_single_step_tree_has_nothing_to_choose():
    traj = make_trajectories(100, 1, [96], seed=0)
    result = search(traj, "2G")
    assert result.thresholds.shape == (0, 1)
    assert result.accuracy == pytest.approx(traj.correct[:, 0].mean())


def test_bad_arguments(traj4):
    with pytest.raises(ValueError, match="below the glance cost"):
        search(traj4, 0.5e9)
    with pytest.raises(ValueError, match="budget"):
        search(traj4, "lots")
    with pytest.raises(TypeError, match="exactly one"):
        search(traj4, "2G", budgets=["3G"])
    with pytest.raises(TypeError, match="exactly one"):
        search(traj4)
    with pytest.raises(TypeError, match="budgets: expected a list"):
        search(traj4, budgets="2G")
    with pytest.raises(ValueError, match="method"):
        search(traj4, "2G", method="annealing")
    with pytest.raises(ValueError, match="criterion"):
        search(traj4, "2G", criterion="margin")
    with pytest.raises(ValueError, match="seed"):
        search(traj4, "2G", seed=-1)
    with pytest.raises(TypeError, match="population_size"):
        search(traj4, "2G", population_size=10)
    with pytest.raises(ValueError, match="population"):
        search(traj4, "2G", population=2)
    with pytest.raises(ValueError, match="max_sets"):
        search(traj4, "2G", method="exhaustive")  # 9 thresholds: far too many sets
    with pytest.raises(TypeError, match="traj"):
        search(traj4.conf, "2G")
    with pytest.raises(ValueError, match="sizes"):
        search(traj4, "2G", method="geometric").evaluate_on(make_trajectories(10, 4, [96, 128, 192]))


def test_plot_writes_an_image_and_needs_something_to_draw(traj4, tmp_path):
    from threshold_search import plot_fronts

    geometric = search(traj4, budgets=["1.5G", "3G"], method="geometric")
    plot_fronts(tmp_path / "curve.png", geometric=geometric, static={"static 224 px": (4e9, 0.85)})
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_fronts(tmp_path / "empty.png")
