"""Focus locations to crop boxes (design.md section 4).

A policy location l in [0,1]^2 is (row, col). A patch of side P in an H x W image has
top = floor(l_row * (H - P)) and left = floor(l_col * (W - P)), so it always lies inside the
image and its corners are whole pixels (the crop then copies pixels without resampling).
"""
from __future__ import annotations

import torch
from torch import Tensor


def focus_boxes(locs: Tensor, sizes, image_hw, batch_index: Tensor | None = None) -> Tensor:
    """Boxes (B, 5) float32 rows (batch_index, x0, y0, x1, y1) for locations ``locs`` (B, 2).

    ``sizes`` is one patch side (int) or one per location ((B,) ints); ``image_hw`` is (H, W);
    ``batch_index`` (B,) says which image each location belongs to (default: row b -> image b).
    """
    if not isinstance(locs, Tensor) or not locs.is_floating_point():
        raise TypeError(f"locs must be a floating-point tensor (B, 2), got {getattr(locs, 'dtype', type(locs))}")
    if locs.dim() != 2 or locs.shape[1] != 2:
        raise ValueError(f"locs must have shape (B, 2) as (row, col), got {tuple(locs.shape)}")
    # Value checks read tensor data: skipped while torch.compile traces (the crop op itself
    # still validates the boxes it receives, at run time).
    checking_values = not torch.compiler.is_compiling()
    if checking_values and (not torch.isfinite(locs).all() or (locs < 0).any() or (locs > 1).any()):
        raise ValueError("locs must lie in [0, 1]")
    height, width = (int(v) for v in image_hw)
    num = locs.shape[0]
    if isinstance(sizes, bool):
        raise TypeError("sizes must be an int or (B,) ints, got bool")
    side = torch.as_tensor(sizes, device=locs.device)
    if side.is_floating_point() or side.dtype == torch.bool:
        raise TypeError(f"sizes must be integers, got dtype {side.dtype}")
    side = side.to(torch.float64).expand(num) if side.dim() == 0 else side.to(torch.float64)
    if side.shape != (num,):
        raise ValueError(f"sizes must be an int or have shape ({num},), got {tuple(side.shape)}")
    if checking_values and num and (side.min() < 1 or side.max() > min(height, width)):
        raise ValueError(f"sizes must lie in [1, min(H, W) = {min(height, width)}], got {side.unique().tolist()}")
    if batch_index is None:
        batch = torch.arange(num, device=locs.device, dtype=torch.float64)
    else:
        batch = torch.as_tensor(batch_index, device=locs.device).to(torch.float64)
        if batch.shape != (num,):
            raise ValueError(f"batch_index must have shape ({num},), got {tuple(batch.shape)}")
    # float64 so that floor() sees the exact product for any realistic image size.
    locs64 = locs.to(torch.float64)
    top = torch.floor(locs64[:, 0] * (height - side))
    left = torch.floor(locs64[:, 1] * (width - side))
    return torch.stack([batch, left, top, left + side, top + side], dim=1).to(torch.float32)
