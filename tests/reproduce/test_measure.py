"""Budget sweeps (searched on validation, scored on test) and the timing helper."""
import numpy as np
import pytest

from msgf.reproduce import measure
from threshold_search import Trajectories, evaluate, make_trajectories


@pytest.fixture(scope="module")
def val():
    return make_trajectories(300, 3, [64, 96], seed=1)


@pytest.fixture(scope="module")
def test(val):
    return make_trajectories(300, 3, [64, 96], seed=2)


def test_budgets_span_the_glance_to_the_costliest_path(val):
    small = make_trajectories(50, 3, [64], seed=3)
    budgets = measure.sweep_budgets([val, small], 6)
    assert len(budgets) == 6 and budgets == sorted(budgets)
    assert budgets[0] > max(val.macs[0], small.macs[0])
    assert budgets[-1] == pytest.approx(max(val.macs.max(), small.macs.max()))
    with pytest.raises(ValueError, match="count"):
        measure.sweep_budgets([val], 0)


def test_sweep_searches_on_validation_and_scores_the_same_thresholds_on_test(val, test):
    budgets = measure.sweep_budgets([val], 3)
    rows = measure.sweep(val, test, budgets, method="geometric")
    assert [r["budget"] for r in rows] == budgets
    for row in rows:
        assert row["val_macs"] <= row["budget"]
        eta = np.array([[float(v) for v in r] for r in row["result"]["thresholds"]])
        assert (row["test_accuracy"], row["test_macs"]) == pytest.approx(evaluate(test, eta))
        assert (row["val_accuracy"], row["val_macs"]) == pytest.approx(evaluate(val, eta))
    entropy = measure.sweep(val, test, budgets, method="geometric", criterion="entropy")
    assert all(r["result"]["criterion"] == "entropy" for r in entropy)


def test_test_scores_are_each_rows_right_scenes_under_its_own_criterion(val, test):
    budgets = measure.sweep_budgets([val], 3)
    for criterion in ("confidence", "entropy"):
        rows = measure.sweep(val, test, budgets, method="geometric", criterion=criterion)
        scores = measure.test_scores(rows, test)
        assert len(scores) == len(rows) and all(s.shape == (test.num_samples,) for s in scores)
        assert [s.mean() for s in scores] == pytest.approx([r["test_accuracy"] for r in rows], abs=1e-12)
    assert set(np.unique(np.concatenate(scores))) <= {0.0, 1.0}


def test_glance_point_and_majority_on_a_hand_built_split():
    labels = np.array([0, 0, 0, 1])
    pred = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 1]])  # T=2, K=2: nodes glance, 64, 96
    traj = Trajectories(sizes=np.array([64, 96]), T=2, labels=labels, conf=np.full((4, 3), 0.5, np.float32),
                        correct=pred == labels[:, None], pred=pred, macs=np.array([5.0, 8.0, 9.0]))
    assert measure.glance_point(traj) == {"macs": 5.0, "accuracy": 0.75}
    assert measure.majority_accuracy(traj) == 0.75


def test_median_throughput_counts_images_per_second():
    calls = []
    result = measure.median_throughput(lambda: calls.append(1), 10, 3)
    assert len(calls) == 4  # one warm-up, three timed
    assert result["images_per_second"] == pytest.approx(10 / result["median_seconds"])
    assert result["median_seconds"] == sorted(result["seconds"])[1]
    with pytest.raises(ValueError, match="repeats"):
        measure.median_throughput(lambda: None, 10, 0)
