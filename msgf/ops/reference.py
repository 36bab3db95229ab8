"""Pure-PyTorch crop-and-resize with the semantics of the compiled kernel.

Written independently of the kernel's loops: each axis becomes a dense (out, in) resampling
matrix and a patch is ``Wy @ image @ Wx^T``. It is the oracle of the tests (in float64) and
the CUDA path of builds compiled without nvcc (in float32).

Semantics (design.md section 4): output pixel j of a box [x0, x1) with w pixels reads the
source at u = x0 + (j + 0.5) * (x1 - x0) / w - 0.5.
- bilinear: the two taps around u, with u clamped to [0, size - 1];
- antialias: the triangle filter of ``F.interpolate(mode="bilinear", antialias=True)``,
  support max(1, scale), over the taps inside the image, renormalised; if none of them has
  weight (a box far outside), the nearest border pixel.
"""
from __future__ import annotations

import torch
from torch import Tensor


def axis_weights(start: float, length: float, out_size: int, in_size: int, antialias: bool,
                 dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The (out_size, in_size) matrix mapping one source axis to one output axis."""
    scale = length / out_size
    j = torch.arange(out_size, dtype=dtype, device=device)
    weights = torch.zeros(out_size, in_size, dtype=dtype, device=device)
    if not antialias:
        u = (start + (j + 0.5) * scale - 0.5).clamp(0, in_size - 1)
        lo = u.floor()
        frac = u - lo
        lo = lo.long()
        hi = (lo + 1).clamp(max=in_size - 1)
        weights.scatter_add_(1, lo[:, None], (1 - frac)[:, None])
        weights.scatter_add_(1, hi[:, None], frac[:, None])
        return weights
    support = max(scale, 1.0)
    center = start + (j + 0.5) * scale
    taps = torch.arange(in_size, dtype=dtype, device=device)
    lo = (center - support + 0.5).clamp(0, in_size).floor()
    hi = (center + support + 0.5).clamp(0, in_size).floor()
    inside = (taps[None, :] >= lo[:, None]) & (taps[None, :] < hi[:, None])
    tri = (1 - ((taps[None, :] - center[:, None] + 0.5) / support).abs()).clamp(min=0) * inside
    total = tri.sum(1, keepdim=True)
    weights = torch.where(total > 0, tri / total.clamp(min=torch.finfo(dtype).tiny), weights)
    empty = (total[:, 0] <= 0).nonzero()[:, 0]
    if len(empty):
        nearest = center[empty].clamp(0, in_size - 1).floor().long()
        weights[empty, nearest] = 1
    return weights


def crop_resize_reference(images: Tensor, boxes: Tensor, out_hw: list[tuple[int, int]], mean: list[float],
                          std: list[float], antialias: bool, out_dtype: torch.dtype,
                          compute_dtype: torch.dtype = torch.float64) -> list[Tensor]:
    """One (C, h, w) patch per box, in the order of ``boxes``.

    ``images`` is uint8 (N, H, W, C) or float (N, C, H, W); arguments are assumed valid.
    """
    planar = images.permute(0, 3, 1, 2) if images.dtype == torch.uint8 else images
    _, channels, height, width = planar.shape
    mean_t = torch.tensor(mean, dtype=compute_dtype, device=images.device).view(channels, 1, 1)
    std_t = torch.tensor(std, dtype=compute_dtype, device=images.device).view(channels, 1, 1)
    patches = []
    for (batch, x0, y0, x1, y1), (h, w) in zip(boxes.tolist(), out_hw):
        source = planar[int(batch)].to(compute_dtype)
        if images.dtype == torch.uint8:
            source = source / 255
        wy = axis_weights(y0, y1 - y0, h, height, antialias, compute_dtype, images.device)
        wx = axis_weights(x0, x1 - x0, w, width, antialias, compute_dtype, images.device)
        patch = torch.einsum("yh,chw,xw->cyx", wy, source, wx)
        patches.append(((patch - mean_t) / std_t).to(out_dtype))
    return patches
