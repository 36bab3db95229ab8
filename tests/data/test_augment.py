import numpy as np
import pytest
import torch

from msgf.data.augment import PAN_PIXELS, brightness_contrast, pan, photo_augment, road_augment


def _image(h=60, w=80, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_brightness_contrast_matches_float_formula():
    image = _image()
    out = brightness_contrast(image, 1.17, -20.4)
    expected = np.clip(np.rint(image.numpy().astype(np.float64) * 1.17 - 20.4), 0, 255)
    assert out.dtype == torch.uint8 and np.array_equal(out.numpy(), expected)


@pytest.mark.parametrize("dx, dy", [(7, -5), (-12, 9), (0, 0)])
def test_pan_moves_pixels_and_boxes_together(dx, dy):
    image = _image()
    boxes = torch.tensor([[20.0, 15.0, 40.0, 30.0]])
    out, moved = pan(image, boxes, dx, dy)
    src = image.numpy()
    expected = np.zeros_like(src)
    h, w = src.shape[:2]
    for y in range(h):  # per-pixel oracle
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                expected[y, x] = src[y - dy, x - dx]
    assert np.array_equal(out.numpy(), expected)
    assert torch.equal(moved, boxes + torch.tensor([dx, dy, dx, dy], dtype=torch.float32))


def test_road_augment_never_pushes_a_box_out_and_pans_within_range():
    image = _image(120, 160)
    boxes = torch.tensor([[2.0, 100.0, 12.0, 118.0]])  # near the left and bottom edges
    offsets = []
    for seed in range(200):
        out = road_augment({"image": image, "boxes": boxes, "label": 1, "path": None}, np.random.default_rng(seed))
        b = out["boxes"][0]
        assert b[0] >= 0 and b[1] >= 0 and b[2] <= 160 and b[3] <= 120
        assert out["image"].dtype == torch.uint8 and out["label"] == 1
        offsets.append((b - boxes[0])[:2])
    offsets = torch.stack(offsets)
    assert offsets.abs().max() <= PAN_PIXELS and (offsets[:, 0] > 50).any()  # room only to the right


def test_photo_augment_moves_boxes_with_the_content():
    image = torch.zeros((100, 100, 3), dtype=torch.uint8)
    image[30:60, 20:70] = 255
    boxes = torch.tensor([[20.0, 30.0, 70.0, 60.0]])
    checked = 0
    for seed in range(60):
        out = photo_augment({"image": image, "boxes": boxes, "label": 0, "path": None},
                            np.random.default_rng(seed), (50, 50))
        assert out["image"].shape == (50, 50, 3) and out["image"].dtype == torch.uint8
        white = out["image"][..., 0].numpy() > 250
        if not len(out["boxes"]) or not white.any():
            continue
        x0, y0, x1, y1 = out["boxes"][0].tolist()
        ys, xs = np.nonzero(white)
        # every fully white pixel lies inside the transformed box (1 px slack for resampling)
        assert xs.min() >= x0 - 1 and xs.max() <= x1 and ys.min() >= y0 - 1 and ys.max() <= y1
        checked += 1
    assert checked > 10
