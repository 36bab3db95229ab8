import itertools
import os

import numpy as np
import pytest
import torch

import msgf.engine


def test_every_node_matches_running_its_path_step_by_step(model, images, trajectory, node_of):
    _, data, summary = trajectory
    K, T = 2, 3
    assert summary.num_samples == 9 and summary.num_nodes == 7
    assert data["conf"].shape == (9, 7) and data["pred"].dtype == np.int64
    with torch.no_grad():
        glance = model.glance(images)
        torch.testing.assert_close(torch.from_numpy(data["conf"][:, 0]), glance.confidence)
        for length in range(1, T):
            for path in itertools.product(range(K), repeat=length):
                state = glance
                for k in path:
                    size = model.config.patch_sizes[k]
                    state = model.focus(state, images, model.propose(state, size).mean, size)
                column = node_of(path, K)
                torch.testing.assert_close(torch.from_numpy(data["conf"][:, column]), state.confidence,
                                           rtol=1e-5, atol=1e-6)
                assert np.array_equal(data["pred"][:, column], state.logits.argmax(1).numpy())


def test_fields_follow_the_trajectory_contract(model, labels, trajectory, node_of):
    _, data, _ = trajectory
    assert set(data) == {"sizes", "T", "labels", "conf", "correct", "pred", "entropy", "macs"}
    assert data["sizes"].tolist() == [32, 48] and int(data["T"]) == 3
    assert np.array_equal(data["labels"], labels.numpy())
    assert np.array_equal(data["correct"], data["pred"] == data["labels"][:, None])
    assert data["conf"].dtype == np.float32 and data["entropy"].dtype == np.float32
    assert data["macs"].dtype == np.float64
    table = model.macs_table()  # GRU classifier: each node adds its step's table entry
    for path in [(), (0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)]:
        expected = table["glance"] + sum(table[model.config.patch_sizes[k]] for k in path)
        assert data["macs"][node_of(path, 2)] == expected


def test_entropy_of_the_glance_node(model, images, trajectory):
    _, data, _ = trajectory
    with torch.no_grad():
        probs = torch.softmax(model.glance(images).logits.double(), dim=1).numpy()
    expected = -(probs * np.log(probs)).sum(axis=1)
    np.testing.assert_allclose(data["entropy"][:, 0], expected, rtol=1e-5)


def test_threshold_search_reads_the_export(trajectory):
    threshold_search = pytest.importorskip("threshold_search")
    path, data, _ = trajectory
    traj = threshold_search.Trajectories.load(path)
    assert traj.num_samples == 9 and traj.num_nodes == 7 and traj.T == 3
    np.testing.assert_array_equal(traj.conf, data["conf"])


def test_batching_does_not_change_the_export(model, images, labels, trajectory, tmp_path):
    _, data, summary = trajectory
    one = tmp_path / "one.npz"
    msgf.engine.export_trajectories(model, [{"images": images, "labels": labels}], one, entropy=False,
                                    progress=False)
    with np.load(one) as npz:
        assert "entropy" not in npz.files
        np.testing.assert_array_equal(npz["pred"], data["pred"])
        np.testing.assert_allclose(npz["conf"], data["conf"], rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["one.npz"]  # no temporary files left behind
    assert set(summary.latency_s) == {"glance", "32", "48"} and all(v > 0 for v in summary.latency_s.values())


def test_export_rejects_bad_input(model, images, tmp_path):
    with pytest.raises(ValueError, match="labels"):
        msgf.engine.export_trajectories(model, [(images[:2], torch.tensor([0]))], tmp_path / "x.npz", progress=False)
    with pytest.raises(ValueError, match="no samples"):
        msgf.engine.export_trajectories(model, [], tmp_path / "x.npz", progress=False)
    assert not (tmp_path / "x.npz").exists() and os.listdir(tmp_path) == []
    model.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            msgf.engine.export_trajectories(model, [], tmp_path / "x.npz", progress=False)
    finally:
        model.eval()
