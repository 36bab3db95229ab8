"""Locations to boxes, by design.md section 4: top = floor(l_row * (H - P)), left likewise."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msgf.ops import crop_resize, focus_boxes


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 2000), st.floats(0, 1), st.floats(0, 1), st.data())
def test_boxes_follow_the_convention_and_stay_inside(height, width, row, col, data):
    side = data.draw(st.integers(1, min(height, width)))
    (batch, x0, y0, x1, y1), = focus_boxes(torch.tensor([[row, col]], dtype=torch.float64), side,
                                          (height, width)).tolist()
    # float32 locations, as the policy produces them, are what the function sees.
    row32, col32 = (float(torch.tensor(v, dtype=torch.float64)) for v in (row, col))
    assert (y0, x0) == (math.floor(row32 * (height - side)), math.floor(col32 * (width - side)))
    assert (x1 - x0, y1 - y0) == (side, side) and batch == 0
    assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height


def test_corners_and_crops_are_plain_slices():
    images = torch.randint(0, 256, (2, 50, 70, 3), dtype=torch.uint8)
    locs = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    boxes = focus_boxes(locs, torch.tensor([16, 24]), (50, 70))
    assert boxes.tolist() == [[0, 0, 0, 16, 16], [1, 46, 26, 70, 50]]
    small, large = crop_resize(images, boxes, [16, 24]).patches
    assert torch.equal((small[0] * 255).round(), images[0, :16, :16].permute(2, 0, 1).float())
    assert torch.equal((large[0] * 255).round(), images[1, 26:, 46:].permute(2, 0, 1).float())
