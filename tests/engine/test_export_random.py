"""export_trajectories(locations="random"): the random-patch ablation's trajectories."""
import numpy as np
import pytest
import torch

import msgf.engine


def _export(model, images, labels, path, **kwargs) -> dict:
    msgf.engine.export_trajectories(model, [(images, labels)], path, progress=False, **kwargs)
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def test_default_is_the_policy_and_unchanged(model, images, labels, trajectory, tmp_path):
    _, data, _ = trajectory  # exported without the new arguments (two batches)
    explicit = _export(model, images, labels, tmp_path / "policy.npz", locations="policy", seed=123)
    np.testing.assert_array_equal(explicit["pred"], data["pred"])
    np.testing.assert_allclose(explicit["conf"], data["conf"], rtol=1e-5, atol=1e-6)


def test_random_locations_differ_from_the_policy_and_repeat_per_seed(model, images, labels, trajectory, tmp_path):
    _, policy, _ = trajectory
    first = _export(model, images, labels, tmp_path / "a.npz", locations="random", seed=5)
    again = _export(model, images, labels, tmp_path / "b.npz", locations="random", seed=5)
    other = _export(model, images, labels, tmp_path / "c.npz", locations="random", seed=6)
    np.testing.assert_array_equal(first["conf"], again["conf"])
    np.testing.assert_array_equal(first["pred"], again["pred"])
    # the glance sees no patch: identical; every focus node moved
    np.testing.assert_allclose(first["conf"][:, 0], policy["conf"][:, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(first["conf"][:, 1:], policy["conf"][:, 1:], atol=1e-4)
    assert not np.allclose(first["conf"][:, 1:], other["conf"][:, 1:], atol=1e-4)
    np.testing.assert_array_equal(first["macs"], policy["macs"])  # same costs: equal budgets compare


def test_random_locations_are_uniform_draws_from_the_seeded_generator(model, images, labels, tmp_path, node_of):
    data = _export(model, images, labels, tmp_path / "r.npz", locations="random", seed=11)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        glance = model.glance(images)
        for k, size in enumerate(model.config.patch_sizes):  # level 2 draws one (B, 2) per size, in order
            proposal = model.propose(glance, size)
            locs = torch.rand((len(images), 2), generator=gen)
            state = model.focus(glance, images, locs, size, proposal=proposal)
            torch.testing.assert_close(torch.from_numpy(data["conf"][:, node_of((k,), 2)]), state.confidence,
                                       rtol=1e-5, atol=1e-6)


def test_bad_locations_or_seed_name_the_argument(model, images, labels, tmp_path):
    with pytest.raises(ValueError, match="locations"):
        msgf.engine.export_trajectories(model, [(images, labels)], tmp_path / "x.npz", progress=False,
                                        locations="oracle")
    with pytest.raises(ValueError, match="seed"):
        msgf.engine.export_trajectories(model, [(images, labels)], tmp_path / "x.npz", progress=False,
                                        locations="random", seed=1.5)
    assert not (tmp_path / "x.npz").exists()
