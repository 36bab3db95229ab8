"""Bad input gets a ValueError/TypeError naming the argument, never a crash."""
import pytest
import torch

from msgf.ops import crop_resize, focus_boxes, glance

IMAGES = torch.zeros(2, 20, 30, 3, dtype=torch.uint8)
BOX = torch.tensor([[0, 1.0, 2.0, 11.0, 12.0]])


@pytest.mark.parametrize("images, error, words", [
    ([[1, 2]], TypeError, "images must be a torch.Tensor"),
    (torch.zeros(2, 20, 30, 3, dtype=torch.float64), TypeError, "images must be uint8"),
    (torch.zeros(2, 20, 30, 3, dtype=torch.int32), TypeError, "images must be uint8"),
    (torch.zeros(20, 30, 3, dtype=torch.uint8), ValueError, "rank 4"),
    (torch.zeros(2, 3, 20, 30, dtype=torch.uint8), ValueError, "channels-first"),
    (torch.zeros(2, 0, 30, 3, dtype=torch.uint8), ValueError, "non-empty"),
])
def test_bad_images(images, error, words):
    with pytest.raises(error, match=words):
        crop_resize(images, BOX, 8)


@pytest.mark.parametrize("boxes, error, words", [
    ([[0, 1, 2, 3, 4]], TypeError, "boxes must be a torch.Tensor"),
    (torch.tensor([[0, 1, 2, 3, 4]]), TypeError, "floating point"),
    (torch.zeros(1, 4), ValueError, r"\(B, 5\)"),
    (torch.tensor([[2, 1.0, 2.0, 11.0, 12.0]]), ValueError, "batch indices"),
    (torch.tensor([[-1, 1.0, 2.0, 11.0, 12.0]]), ValueError, "batch indices"),
    (torch.tensor([[0.5, 1.0, 2.0, 11.0, 12.0]]), ValueError, "batch indices"),
    (torch.tensor([[0, float("nan"), 2.0, 11.0, 12.0]]), ValueError, "finite"),
    (torch.tensor([[0, 1.0, float("inf"), 11.0, 12.0]]), ValueError, "finite"),
    (torch.tensor([[0, 11.0, 2.0, 1.0, 12.0]]), ValueError, "inverted"),
    (torch.tensor([[0, 1.0, 2.0, 1.0, 12.0]]), ValueError, "inverted"),
    (torch.tensor([[0, 1.0, 2.0, 1e30, 12.0]]), ValueError, "within"),
])
def test_bad_boxes(boxes, error, words):
    with pytest.raises(error, match=words):
        crop_resize(IMAGES, boxes, 8)


@pytest.mark.parametrize("sizes, error, words", [
    (0, ValueError, r"out_sizes must lie in \[1"),
    (-3, ValueError, "out_sizes must lie in"),
    (100000, ValueError, "out_sizes must lie in"),
    (8.0, TypeError, "out_sizes"),
    (True, TypeError, "out_sizes"),
    ([8, 8], ValueError, "one entry per box"),
    ([[8, 8, 8]], ValueError, r"\(h, w\) pair"),
    (torch.tensor([8.0]), TypeError, "integers"),
    ("8", TypeError, "out_sizes"),
])
def test_bad_sizes(sizes, error, words):
    with pytest.raises(error, match=words):
        crop_resize(IMAGES, BOX, sizes)


def test_bad_normalisation_and_dtype():
    with pytest.raises(ValueError, match="std must be positive"):
        crop_resize(IMAGES, BOX, 8, std=[1, 0, 1])
    with pytest.raises(ValueError, match="mean must have one value per channel"):
        crop_resize(IMAGES, BOX, 8, mean=[0.5, 0.5])
    with pytest.raises(ValueError, match="mean must be finite"):
        crop_resize(IMAGES, BOX, 8, mean=float("nan"))
    with pytest.raises(TypeError, match="out_dtype"):
        crop_resize(IMAGES, BOX, 8, out_dtype=torch.float64)
    with pytest.raises(TypeError, match="antialias"):
        crop_resize(IMAGES, BOX, 8, antialias=1)


def test_direct_op_calls_are_validated_too():
    """torch.ops.msgf.crop_resize skips the wrapper; the kernel must still be safe."""
    with pytest.raises(ValueError, match="batch indices"):
        torch.ops.msgf.crop_resize(IMAGES, torch.tensor([[7, 1.0, 2.0, 11.0, 12.0]]), [8], [8], [0.0], [1.0], False,
                                   torch.float32)
    with pytest.raises(ValueError, match="out_sizes must lie in"):
        torch.ops.msgf.crop_resize(IMAGES, BOX, [0], [8], [0.0], [1.0], False, torch.float32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_devices():
    with pytest.raises(ValueError, match="one device"):
        crop_resize(IMAGES.cuda(), BOX, 8)


def test_empty_batches():
    assert crop_resize(IMAGES, torch.zeros(0, 5), 8).patches == []
    assert glance(IMAGES[:0], 8).shape == (0, 3, 8, 8)


def test_bad_focus_locations():
    with pytest.raises(ValueError, match=r"locs must lie in \[0, 1\]"):
        focus_boxes(torch.tensor([[0.5, 1.5]]), 8, (20, 30))
    with pytest.raises(TypeError, match="locs must be a floating-point tensor"):
        focus_boxes(torch.tensor([[0, 1]]), 8, (20, 30))
    with pytest.raises(ValueError, match=r"sizes must lie in \[1, min\(H, W\) = 20\]"):
        focus_boxes(torch.tensor([[0.5, 0.5]]), 21, (20, 30))
    with pytest.raises(ValueError, match="sizes must be an int or have shape"):
        focus_boxes(torch.tensor([[0.5, 0.5]]), [8, 8], (20, 30))
    with pytest.raises(ValueError, match="batch_index must have shape"):
        focus_boxes(torch.tensor([[0.5, 0.5]]), 8, (20, 30), batch_index=torch.tensor([0, 1]))


def test_numpy_statistics_are_accepted():
    import numpy as np

    want = crop_resize(IMAGES, BOX, 8, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.25]).patches[0]
    for mean, std in ((np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.2, 0.25], np.float32)),
                      ([np.float32(0.5), 0.4, 0.3], (np.float64(0.2), 0.2, 0.25))):
        got = crop_resize(IMAGES, BOX, 8, mean=mean, std=std).patches[0]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
