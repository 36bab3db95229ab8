"""The validation set carved from the training images (msgf.data.holdout)."""
import numpy as np
import pytest

from msgf.data.holdout import stratified_holdout

# four classes of very different sizes, interleaved as a real manifest's rows are; one class
# has a single image, which must stay in training
LABELS = np.random.default_rng(3).permutation(np.repeat([0, 1, 2, 3], [120, 50, 29, 1]))


def test_held_images_are_stratified_by_class():
    kept, held = stratified_holdout(LABELS, 0.1, seed=0)
    assert len(held) == 20  # round(0.1 * 200)
    counts = np.bincount(LABELS[held], minlength=4)
    expected = 0.1 * np.bincount(LABELS)
    assert np.all(np.abs(counts - expected) < 1), (counts, expected)
    assert counts[3] == 0  # a class's only image stays for training


def test_kept_and_held_are_disjoint_and_cover_every_image():
    kept, held = stratified_holdout(LABELS, 0.25, seed=5)
    assert len(np.intersect1d(kept, held)) == 0
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(LABELS)))
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)


def test_same_seed_same_split_other_seed_other_split():
    first = stratified_holdout(LABELS, 0.1, seed=7)[1]
    again = stratified_holdout(LABELS.copy(), 0.1, seed=7)[1]
    other = stratified_holdout(LABELS, 0.1, seed=8)[1]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # the other seed draws other images, not only another order of the same class counts
    assert np.array_equal(np.bincount(LABELS[first], minlength=4), np.bincount(LABELS[other], minlength=4))


def test_limit_caps_the_count_and_keeps_the_proportions():
    held = stratified_holdout(LABELS, 0.5, seed=0, limit=10)[1]
    assert len(held) == 10
    assert np.array_equal(np.bincount(LABELS[held], minlength=4), [6, 3, 1, 0])  # 6.0, 2.5, 1.45, 0.05


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.1"])
def test_bad_fraction_is_named(fraction):
    with pytest.raises(ValueError, match="fraction"):
        stratified_holdout(LABELS, fraction, seed=0)


def test_bad_labels_and_limit_are_named():
    with pytest.raises(ValueError, match="labels"):
        stratified_holdout([], 0.1, seed=0)
    with pytest.raises(ValueError, match="limit"):
        stratified_holdout(LABELS, 0.1, seed=0, limit=0)
