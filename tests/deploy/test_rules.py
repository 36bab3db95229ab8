"""msgf.deploy.rules (numpy) against the engine's torch versions they mirror."""
import numpy as np
import torch

from msgf import ops
from msgf.deploy.manifest import eta_of
from msgf.deploy.rules import EXIT, focus_box, next_size_index
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


def test_an_exports_sets_from_before_the_rule_decide_as_they_did():
    # A manifest written before issue 29: its sets have no "rule" and meant exit at c > eta.
    eta = [[0.5, 0.75], [0.25, "inf"]]
    conf = np.float32([0.25, 0.5, 0.6, 0.75, 0.8, 1.0])  # on and between the thresholds
    legacy, current = eta_of({"eta": eta}), eta_of({"eta": eta, "rule": ">="})
    assert next_size_index(legacy, 1, conf).tolist() == [0, 0, 1, 1, EXIT, EXIT]
    assert next_size_index(current, 1, conf).tolist() == [0, 1, 1, EXIT, EXIT, EXIT]
    assert next_size_index(legacy, 2, conf).tolist() == [0, 1, 1, 1, 1, 1]
    assert next_size_index(current, 2, conf).tolist() == [1, 1, 1, 1, 1, 1]


def test_focus_box_matches_focus_boxes():
    rng = np.random.default_rng(1)
    for _ in range(300):
        hw = (int(rng.integers(64, 5000)), int(rng.integers(64, 5000)))
        side = int(rng.choice([32, 48, 64]))
        loc = rng.random(2).astype(np.float32) * 1.2 - 0.1  # also outside [0, 1]: clamped first
        expected = ops.focus_boxes(torch.from_numpy(loc)[None].clamp(0, 1), side, hw)[0, 1:].int().tolist()
        assert list(focus_box(loc, side, hw)) == expected
