"""The glance's antialiased resize as two dense matrices, in numpy (no torch).

`msgf.ops.glance` resizes with the triangle filter of `F.interpolate(antialias=True)` (Pillow's),
support max(1, scale), renormalised at the image edge. ONNX's `Resize(antialias=1)` is a
different discretisation of the same idea: onnxruntime's differs from ours by up to 0.035 on
[0, 1] data (tests/deploy checks that this is still so), so the deployed glance does not use it.
The filter is separable and depends only on the input and output sizes, so the runtime computes
the taps per axis here and the glance graph applies them as matrix products.

Dense (out, in) matrices would cost out x in multiply-adds per row of the other axis: a 960x1280
image cost 10x more in onnxruntime than our kernel's glance (measured: 20 ms against 2 ms). Each
output only reads about 2 * scale taps, so `banded` groups BLOCK consecutive outputs, whose taps
lie in one window of the input, and gives each group its window (an index list, gathered) and
its (BLOCK, window) weights: about (BLOCK + 3) / out of the dense work.
"""
from __future__ import annotations

import numpy as np

BLOCK = 8  # outputs per window: larger windows waste less on overlap, gather more bytes


def axis_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32: row j holds the filter taps of output pixel j over the
    whole axis [0, in_size) (design.md: u = (j + 0.5) * scale - 0.5), summing to 1."""
    for name, value in (("in_size", in_size), ("out_size", out_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    scale = in_size / out_size
    support = max(scale, 1.0)
    # float64, then rounded once: the kernel computes its taps in float32, which agrees to ~1e-7
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    taps = np.arange(in_size, dtype=np.float64)
    lo = np.floor(np.clip(center - support + 0.5, 0, in_size))
    hi = np.floor(np.clip(center + support + 0.5, 0, in_size))
    inside = (taps[None, :] >= lo[:, None]) & (taps[None, :] < hi[:, None])
    tri = np.clip(1 - np.abs((taps[None, :] - center[:, None] + 0.5) / support), 0, None) * inside
    # Over the whole axis every output has taps of positive weight (its centre lies inside).
    return (tri / tri.sum(axis=1, keepdims=True)).astype(np.float32)


def glance_weights(image_hw: tuple[int, int], glance_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows (g_h, H), cols (W, g_w)): glance = rows @ image @ cols, per channel."""
    (height, width), (out_h, out_w) = image_hw, glance_hw
    return axis_weights(int(height), int(out_h)), np.ascontiguousarray(axis_weights(int(width), int(out_w)).T)


def banded(in_size: int, out_size: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """The taps of `axis_weights(in_size, out_size)` grouped by `block` outputs: index (G, L)
    int64 input positions of each group's window, and weights (G, block, L) float32 (rows past
    out_size are zero), with G = ceil(out_size / block). Exact: a window holds every tap of its
    outputs with a non-zero weight."""
    dense = axis_weights(in_size, out_size)
    groups = -(-out_size // block)
    padded = np.zeros((groups * block, in_size), dtype=np.float32)
    padded[:out_size] = dense
    nonzero = padded != 0
    first = np.where(nonzero.any(1), nonzero.argmax(1), in_size)
    last = np.where(nonzero.any(1), in_size - nonzero[:, ::-1].argmax(1), 0)
    lo = first.reshape(groups, block).min(1)
    hi = last.reshape(groups, block).max(1)
    width = int(max(1, (hi - lo).max()))
    start = np.clip(lo, 0, in_size - width)
    index = start[:, None] + np.arange(width)[None, :]
    weights = np.take_along_axis(padded.reshape(groups, block, in_size), index[:, None, :].repeat(block, 1), axis=2)
    return index.astype(np.int64), np.ascontiguousarray(weights)


def glance_inputs(image_hw: tuple[int, int], glance_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The filter inputs of the glance graph (msgf.deploy.translation.glance_graph) for images
    of size image_hw resized to glance_hw."""
    (height, width), (out_h, out_w) = image_hw, glance_hw
    row_index, row_weights = banded(int(height), int(out_h))
    col_index, col_weights = banded(int(width), int(out_w))
    # columns: (G, 1, L, block), so that the product runs over the window for every channel and row
    return {"row_index": row_index, "row_weights": row_weights, "col_index": col_index,
            "col_weights": np.ascontiguousarray(col_weights.transpose(0, 2, 1)[:, None])}
