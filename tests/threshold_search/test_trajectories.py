"""The .npz contract: layout, round trip, and a clear error for every malformed field."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from threshold_search import Trajectories, fixed_size_path, make_trajectories, node_index
from threshold_search.tree import child_index, num_nodes


def test_node_index_is_level_order_with_the_issue_formula():
    K, T = 3, 4
    # Enumerate level by level, paths in lexicographic order: that *is* level order.
    expected = 0
    for t in range(1, T + 1):
        for path in itertools.product(range(K), repeat=t - 1):
            assert node_index(path, K) == expected
            expected += 1
    assert expected == num_nodes(T, K) == 1 + 3 + 9 + 27
    assert child_index(node_index([2], K), 1, K) == node_index([2, 1], K)
    assert fixed_size_path(T, 1, K) == [0, node_index([1], K), node_index([1, 1], K), node_index([1, 1, 1], K)]


def test_save_load_round_trip(tmp_path):
    traj = make_trajectories(50, 3, [96, 128], seed=1)
    traj.save(tmp_path / "val.npz")
    loaded = Trajectories.load(tmp_path / "val.npz")
    for name in ("sizes", "labels", "conf", "correct", "pred", "macs", "entropy"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(traj, name))
        assert getattr(loaded, name).dtype == getattr(traj, name).dtype
    assert loaded.T == 3 and loaded.conf.dtype == np.float32 and loaded.macs.dtype == np.float64
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left nothing behind


def _fields(**changes):
    traj = make_trajectories(10, 3, [96, 128], seed=0)
    fields = dict(sizes=traj.sizes, T=np.int64(traj.T), labels=traj.labels, conf=traj.conf,
                  correct=traj.correct, pred=traj.pred, macs=traj.macs, entropy=traj.entropy)
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def _nan_conf():
    conf = _fields()["conf"].copy()
    conf[3, 5] = np.nan
    return conf


def _flipped_correct():
    correct = _fields()["correct"].copy()
    correct[0, 0] = ~correct[0, 0]
    return correct


def _not_cumulative():
    macs = _fields()["macs"].copy()
    macs[4] = macs[0] / 2
    return macs


@pytest.mark.parametrize("changes,message", [
    (dict(conf=_nan_conf()), r"conf: 1 non-finite value\(s\) \(NaN or inf\), first at index \(3, 5\)"),
    (dict(conf=np.full((10, 7), 1.5, np.float32)), r"conf: max-softmax confidences must lie in \[0, 1\]"),
    (dict(conf=np.zeros((10, 6), np.float32)), r"conf: expected shape \(10, 7\), got \(10, 6\)"),
    (dict(conf=np.zeros((10, 7), np.int64)), "conf: expected a float array"),
    (dict(correct=np.zeros((10, 7), np.int8)), "correct: expected a bool array"),
    (dict(correct=_flipped_correct()), r"correct: must equal \(pred == labels"),
    (dict(labels=np.zeros(10, np.float32)), "labels: expected an integer array"),
    (dict(pred=np.zeros((10, 3), np.int64)), r"pred: expected shape \(10, 7\)"),
    (dict(macs=_not_cumulative()), "macs: level 3 has a node cheaper than its parent"),
    (dict(macs=np.zeros(7)), "macs: cumulative MACs must be positive"),
    (dict(sizes=np.array([96, -1])), "sizes: expected at least one positive patch size"),
    (dict(T=np.float64(3.0)), "T: expected an integer >= 1"),
    (dict(entropy=np.full((10, 7), -1.0, np.float32)), "entropy: must be >= 0"),
    (dict(labels=None), "missing field"),
    (dict(extra=np.zeros(3)), "unknown field"),
])
def test_malformed_files_name_the_field(tmp_path, changes, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **_fields(**changes))
    with pytest.raises(ValueError, match=message):
        Trajectories.load(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not a zip archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        Trajectories.load(path)
    with pytest.raises(FileNotFoundError):
        Trajectories.load(tmp_path / "missing.npz")


def test_subset_keeps_the_tree():
    traj = make_trajectories(40, 3, [96, 128], seed=2)
    part = traj.subset(np.arange(40) % 2 == 0)
    assert part.num_samples == 20
    np.testing.assert_array_equal(part.conf, traj.conf[::2])
    np.testing.assert_array_equal(part.macs, traj.macs)


def test_synthetic_trajectories_are_realistic():
    traj = make_trajectories(20000, 4, [96, 128, 160], seed=0)
    K = 3
    paths = [fixed_size_path(4, k, K) for k in range(K)]
    accuracy = np.array([traj.correct[:, p].mean(axis=0) for p in paths])  # (size, step)
    confidence = np.array([traj.conf[:, p].mean(axis=0) for p in paths])
    assert (np.diff(accuracy, axis=1) > 0).all() and (np.diff(confidence, axis=1) > 0).all()
    assert (np.diff(accuracy[:, -1]) > 0).all()  # larger patches are more accurate...
    assert (np.diff(traj.macs[[p[-1] for p in paths]]) > 0).all()  # ...and cost more
    glance_conf, glance_correct = traj.conf[:, 0], traj.correct[:, 0]
    confident = glance_conf > np.median(glance_conf)
    assert glance_correct[confident].mean() > glance_correct[~confident].mean() + 0.3


@pytest.mark.parametrize("arguments,message", [
    (dict(n=0, T=3, sizes=[96]), "n:"), (dict(n=10, T=0, sizes=[96]), "T:"), (dict(n=10, T=2, sizes=[]), "sizes:"),
])
def test_synthetic_generator_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        make_trajectories(**arguments)
