"""evaluate / evaluate_many against the per-sample loop of Eq. 9."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threshold_search import Evaluator, correct_per_sample, evaluate, evaluate_many, exit_nodes, make_trajectories


def _thresholds(rng, traj, P, levels=8):
    # Thresholds from the confidences' own values (ties), plus both infinities and in-between values.
    values = np.r_[np.arange(0, levels + 1) / levels, -np.inf, np.inf, 0.3, 0.71]
    return rng.choice(values, size=(P, *traj.eta_shape))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 5), K=st.integers(1, 3), n=st.integers(1, 40))
def test_evaluate_matches_the_loop_on_random_trajectories(seed, T, K, n, oracle, make_random):
    rng = np.random.default_rng(seed)
    traj = make_random(rng, n, T, K)
    for eta in _thresholds(rng, traj, 3):
        accuracy, macs = evaluate(traj, eta)
        expected_accuracy, expected_macs = oracle(traj, eta)
        assert accuracy == pytest.approx(expected_accuracy, abs=1e-12)
        assert macs == pytest.approx(expected_macs, rel=1e-12)


@pytest.mark.parametrize("T,K", [(2, 3), (3, 2), (4, 3), (5, 2)])
def test_evaluate_matches_the_loop_on_realistic_trajectories(T, K, oracle):
    traj = make_trajectories(300, T, [96, 128, 160][:K], seed=T * 10 + K)
    rng = np.random.default_rng(0)
    pool = np.sort(traj.conf.ravel())
    for eta in pool[rng.integers(0, pool.size, (6, *traj.eta_shape))]:
        assert evaluate(traj, eta) == pytest.approx(oracle(traj, eta), rel=1e-12)


def test_evaluate_many_equals_repeated_evaluate(make_random):
    rng = np.random.default_rng(7)
    for T, K in [(2, 2), (3, 3), (4, 2)]:
        traj = make_random(rng, 120, T, K)
        etas = _thresholds(rng, traj, 50)
        accuracy, macs = evaluate_many(traj, etas)
        one_by_one = np.array([evaluate(traj, eta) for eta in etas])
        np.testing.assert_array_equal(accuracy, one_by_one[:, 0])
        np.testing.assert_array_equal(macs, one_by_one[:, 1])


def test_thresholds_are_compared_as_real_numbers_not_float32():
    # 0.5 + 1e-12 rounds to 0.5 in float32; c = 0.5 must still count as below it and stay.
    traj = make_trajectories(50, 2, [96], seed=0)
    conf = traj.conf.copy()
    conf[:, 0] = 0.5
    traj = type(traj)(sizes=traj.sizes, T=2, labels=traj.labels, conf=conf, correct=traj.correct,
                      pred=traj.pred, macs=traj.macs)
    _, macs_above = evaluate(traj, [[0.5 + 1e-12]])
    _, macs_equal = evaluate(traj, [[0.5]])
    assert macs_above == pytest.approx(traj.macs[1])  # nobody exits at the glance
    assert macs_equal == pytest.approx(traj.macs[0])  # everyone does: a tie at the threshold leaves


def test_thresholds_in_one_float32_gap_keep_their_real_order(oracle):
    # Both round up to the same float32; the engine sorts the real values (size 1 first), and
    # so must the evaluator, or the block below them would go to size 0.
    traj = make_trajectories(60, 3, [96, 128], seed=1)
    eta = np.array([[0.5 + 2e-12, 0.5 + 1e-12], [0.9, 0.2]])
    assert evaluate(traj, eta) == pytest.approx(oracle(traj, eta), rel=1e-12)


def test_entropy_and_random_criteria_use_their_scores(oracle, make_random):
    rng = np.random.default_rng(3)
    traj = make_random(rng, 80, 3, 2)
    eta = np.array([[-0.9, -0.5], [-1.2, -0.2]])
    assert evaluate(traj, eta, criterion="entropy") == pytest.approx(oracle(traj, eta, -traj.entropy))
    random_scores = np.random.default_rng(11).random(traj.conf.shape, dtype=np.float32)
    eta = np.array([[0.3, 0.6], [0.5, 0.2]])
    assert evaluate(traj, eta, criterion="random", seed=11) == pytest.approx(oracle(traj, eta, random_scores))


def test_bad_thresholds_raise_clear_errors():
    traj = make_trajectories(20, 3, [96, 128], seed=0)
    with pytest.raises(ValueError, match=r"eta: expected shape \(T-1, K\) = \(2, 2\)"):
        evaluate(traj, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="eta"):
        evaluate(traj, np.zeros(4))
    with pytest.raises(ValueError, match=r"etas: expected shape \(P, T-1, K\)"):
        evaluate_many(traj, np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(traj, [[0.5, np.nan], [0.1, 0.2]])
    with pytest.raises(TypeError, match="numeric"):
        evaluate(traj, [["a", "b"], ["c", "d"]])
    with pytest.raises(TypeError, match="traj"):
        evaluate(traj.conf, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="criterion"):
        evaluate(traj, np.zeros((2, 2)), criterion="margin")


def test_entropy_criterion_needs_the_entropy_field():
    traj = make_trajectories(20, 2, [96], seed=0, with_entropy=False)
    with pytest.raises(ValueError, match="entropy"):
        Evaluator(traj, criterion="entropy")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 5), K=st.integers(1, 3), n=st.integers(1, 40))
def test_exit_nodes_match_the_walk_of_each_sample(seed, T, K, n, walk, make_random):
    rng = np.random.default_rng(seed)
    traj = make_random(rng, n, T, K)
    for eta in _thresholds(rng, traj, 3):
        np.testing.assert_array_equal(exit_nodes(traj, eta), walk(traj, eta))
        correct = correct_per_sample(traj, eta)
        assert correct.dtype == bool and correct.shape == (n,)
        assert correct.mean() == pytest.approx(evaluate(traj, eta)[0], abs=1e-12)


def test_exit_nodes_use_the_criterions_scores(walk, make_random):
    rng = np.random.default_rng(5)
    traj = make_random(rng, 80, 3, 2)
    eta = np.array([[-0.9, -0.5], [-1.2, -0.2]])
    np.testing.assert_array_equal(exit_nodes(traj, eta, criterion="entropy"), walk(traj, eta, -traj.entropy))
    random_scores = np.random.default_rng(11).random(traj.conf.shape, dtype=np.float32)
    eta = np.array([[0.3, 0.6], [0.5, 0.2]])
    np.testing.assert_array_equal(exit_nodes(traj, eta, criterion="random", seed=11), walk(traj, eta, random_scores))


def test_a_searched_result_gives_each_samples_correctness_on_other_data():
    from threshold_search import search

    val, test = make_trajectories(200, 3, [96, 128], seed=2), make_trajectories(150, 3, [96, 128], seed=3)
    result = search(val, budgets=[float(np.median(val.macs))], method="geometric").results[0]
    correct = result.correct_on(test)
    assert correct.shape == (150,) and correct.mean() == pytest.approx(result.evaluate_on(test)[0], abs=1e-12)
    with pytest.raises(ValueError, match="sizes"):
        result.correct_on(make_trajectories(10, 3, [64, 128], seed=0))
    with pytest.raises(ValueError, match="eta"):
        exit_nodes(test, np.zeros((3, 2)))
