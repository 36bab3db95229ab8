"""A validation set carved from the training images when none is given: stratified by class,
the same for the same seed, never sharing an image with what stays for training. Numpy only."""
from __future__ import annotations

import numpy as np

# the carve's own random stream, apart from every stream the training run draws from
_STREAM = 0x686F6C64  # "hold"


def check_fraction(value, name: str = "fraction") -> float:
    """`value` as a share strictly between 0 and 1; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name}: expected a number between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def stratified_holdout(labels, fraction: float, seed: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held): indices into `labels` (ascending) that stay for training and that are held
    out for validation.

    round(fraction * N) images are held (at most `limit`), shared among the classes in
    proportion to their sizes (largest remainders get the rounding), and every class keeps at
    least one training image. Which images of a class are held is drawn from `seed` alone.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels: expected a non-empty 1-D sequence, got shape {labels.shape}")
    check_fraction(fraction)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit: expected a positive integer or None, got {limit!r}")
    classes, counts = np.unique(labels, return_counts=True)
    total = int(round(fraction * len(labels)))
    if limit is not None:
        total = min(total, int(limit))
    exact = counts * total / len(labels)
    quota = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[:total - int(quota.sum())]] += 1
    quota = np.minimum(quota, counts - 1)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM]))
    held = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held
