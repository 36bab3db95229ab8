"""Realistic synthetic trajectories for tests and benchmarks (no trained model needed).

"Realistic" means the structure the searches exploit is there, as in a real export: each sample
has a difficulty; evidence about it accumulates along the path, more per step for larger
patches (which also cost more, quadratically in the side); confidence and correctness both
follow that evidence, so confident samples are usually right and deeper nodes are more
confident. Noise is shared along a path, so a sample's outcomes at a node and its children are
correlated, not independent draws.
"""
from __future__ import annotations

import numpy as np

from threshold_search.trajectories import Trajectories
from threshold_search.tree import level_offset, level_width, num_nodes

# Cost model in the spirit of ResNet-50 at 96 px (notes.md): about 0.75 G for the encoder,
# quadratic in the side, plus about 56 M per step for the policy and the classifier.
_ENCODER_MACS_AT_96 = 0.75e9
_HEAD_MACS = 56e6


def step_macs(size: int) -> float:
    """MACs of one step at patch side `size` under the synthetic cost model."""
    return _ENCODER_MACS_AT_96 * (size / 96.0) ** 2 + _HEAD_MACS


def make_trajectories(n: int, T: int, sizes, seed: int = 0, *, glance_size: int = 96,
                      num_classes: int = 10, with_entropy: bool = True) -> Trajectories:
    """N samples over the full tree of T steps and the given candidate focus sizes."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T: expected an integer >= 1, got {T!r}")
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or (sizes <= 0).any():
        raise ValueError(f"sizes: expected positive patch sizes, got {sizes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes: expected at least 2, got {num_classes}")
    rng = np.random.default_rng(seed)
    K = sizes.size
    M = num_nodes(T, K)

    difficulty = rng.normal(0.0, 1.0, n)
    margin = np.empty((n, M))
    drift = np.empty((n, M))  # path-shared noise: children inherit most of their parent's
    macs = np.empty(M)
    margin[:, 0] = 0.2 - 1.6 * difficulty
    drift[:, 0] = rng.normal(0.0, 0.5, n)
    macs[0] = step_macs(glance_size)
    gain = 1.3 * sizes / sizes.max()  # larger patches see more of the object
    for t in range(2, T + 1):
        decay = 0.75 ** (t - 2)  # later glimpses add less
        for local in range(level_width(t, K)):
            node = level_offset(t, K) + local
            parent = level_offset(t - 1, K) + local // K
            k = local % K
            drift[:, node] = 0.7 * drift[:, parent] + rng.normal(0.0, 0.45, n)
            margin[:, node] = margin[:, parent] + decay * gain[k] + 0.2 * (drift[:, node] - drift[:, parent])
            macs[node] = macs[parent] + step_macs(int(sizes[k]))
    evidence = margin + drift
    correct = evidence + rng.normal(0.0, 1.2, (n, M)) > 0
    # Max softmax lies in [1/C, 1]; it tracks the evidence through a noisy sigmoid.
    squash = 1.0 / (1.0 + np.exp(-(1.2 * evidence + rng.normal(0.0, 0.6, (n, M)))))
    conf = (1.0 / num_classes + (1.0 - 1.0 / num_classes) * squash).astype(np.float32)

    labels = rng.integers(0, num_classes, n)
    wrong = (labels[:, None] + rng.integers(1, num_classes, (n, M))) % num_classes
    pred = np.where(correct, labels[:, None], wrong)

    entropy = None
    if with_entropy:
        # The max class contributes -c log c; the rest of the mass is spread unevenly over the
        # other classes, so entropy is not a monotone function of conf (the criteria differ).
        c = conf.astype(np.float64)
        rest = 1.0 - c
        spread = np.log(num_classes - 1) * rng.beta(5.0, 2.0, (n, M))
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = np.where(rest > 0, -rest * np.log(rest), 0.0)
        entropy = (-c * np.log(c) + tail + rest * spread).astype(np.float32)
    return Trajectories(sizes=sizes, T=int(T), labels=labels, conf=conf, correct=correct,
                        pred=pred, macs=macs, entropy=entropy)
