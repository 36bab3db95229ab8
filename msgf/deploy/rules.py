"""The engine's two rules, in numpy: the exit rule (paper Eq. 9, msgf.engine.thresholds) and the
focus box of a policy location (design.md section 4, msgf.ops.focus_boxes). The onnxruntime
predictor cannot import their torch versions; tests/deploy checks these against them."""
from __future__ import annotations

import numpy as np

EXIT = -1  # as msgf.engine.EXIT


def next_size_index(eta: np.ndarray, step: int, confidence: np.ndarray) -> np.ndarray:
    """(B,) int64 index of the next patch size, or EXIT, at step `step` (1-based) of T = len(eta) + 1.

    Exit if c >= max_k eta[t, k]; otherwise the size whose threshold is the smallest one > c
    (ties: the smaller k). Step T always exits. Compared in float64, which holds every float32
    confidence exactly, as the engine and threshold_search do.
    """
    eta = np.asarray(eta, dtype=np.float64)
    conf = np.asarray(confidence).astype(np.float64)
    if step == eta.shape[0] + 1:
        return np.full(conf.shape, EXIT, dtype=np.int64)
    if not 1 <= step <= eta.shape[0]:
        raise ValueError(f"step must be in 1..{eta.shape[0] + 1}, got {step!r}")
    row = eta[step - 1]
    order = np.argsort(row, kind="stable")
    reached = (conf[:, None] >= row[order][None, :]).sum(axis=1)
    return np.where(reached == len(row), EXIT, order[np.minimum(reached, len(row) - 1)]).astype(np.int64)


def focus_box(location: np.ndarray, side: int, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the side-`side` patch at `location` (row, col) in an H x W image:
    top = floor(l_row * (H - P)), left = floor(l_col * (W - P)), l clamped to [0, 1] in float32
    and multiplied in float64, as msgf.ops.focus_boxes after the engine's clamp."""
    height, width = int(image_hw[0]), int(image_hw[1])
    loc = np.clip(np.asarray(location, dtype=np.float32), np.float32(0), np.float32(1)).astype(np.float64)
    top = int(np.floor(loc[0] * (height - side)))
    left = int(np.floor(loc[1] * (width - side)))
    return left, top, left + side, top + side
