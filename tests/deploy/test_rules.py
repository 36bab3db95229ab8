"""msgf.deploy.rules (numpy) against the engine's torch versions they mirror."""
import numpy as np
import torch

from msgf import ops
from msgf.deploy.rules import focus_box, next_size_index
from msgf.engine import Thresholds


def test_exit_rule_matches_the_engine():
    rng = np.random.default_rng(0)
    for K in (1, 2, 3):
        for _ in range(20):
            eta = rng.choice([0.3, 0.5, 0.7, 0.9, np.inf, -np.inf], size=(3, K))
            conf = rng.choice([0.3, 0.5, 0.7, 0.9, 0.95, 0.1], size=64).astype(np.float32)  # ties on purpose
            conf[:8] = rng.random(8).astype(np.float32)
            thresholds = Thresholds(eta)
            for step in range(1, 5):
                expected = thresholds.next_size_index(step, torch.from_numpy(conf)).numpy()
                np.testing.assert_array_equal(next_size_index(eta, step, conf), expected)


def test_focus_box_matches_focus_boxes():
    rng = np.random.default_rng(1)
    for _ in range(300):
        hw = (int(rng.integers(64, 5000)), int(rng.integers(64, 5000)))
        side = int(rng.choice([32, 48, 64]))
        loc = rng.random(2).astype(np.float32) * 1.2 - 0.1  # also outside [0, 1]: clamped first
        expected = ops.focus_boxes(torch.from_numpy(loc)[None].clamp(0, 1), side, hw)[0, 1:].int().tolist()
        assert list(focus_box(loc, side, hw)) == expected
