"""Where training puts its crops and patches: stage 0's crops around an object (or a decoy),
stage I's object-located patches, and the centred crops that measure what f_L reads."""
from __future__ import annotations

import math

import torch

from msgf import ops
from msgf.engine.error_budget import contains, object_centres


def training_crops(boxes: list, size: int, hw: tuple[int, int], gen: torch.Generator, object_crops: bool,
                   distractors: list | None = None):
    """(B, 5) crop boxes of side `size`: containing an object box (random offset) where the
    sample has one and object_crops is set; else containing one of its distractor boxes (hard
    negatives, where given); anywhere in the image otherwise."""
    height, width = hw
    rows = []
    for b, sample_boxes in enumerate(boxes):
        top_range, left_range = (0, height - size), (0, width - size)
        if object_crops and not len(sample_boxes) and distractors is not None:
            sample_boxes = distractors[b]
        if object_crops and len(sample_boxes):
            pick = int(torch.randint(len(sample_boxes), (1,), generator=gen))
            x0, y0, x1, y1 = (float(v) for v in sample_boxes[pick])
            left_range = _containing(x0, x1, size, width)
            top_range = _containing(y0, y1, size, height)
        top = int(torch.randint(top_range[0], top_range[1] + 1, (1,), generator=gen))
        left = int(torch.randint(left_range[0], left_range[1] + 1, (1,), generator=gen))
        rows.append([b, left, top, left + size, top + size])
    return torch.tensor(rows, dtype=torch.float32)


def object_locations(locs, boxes: list, sizes, hw: tuple[int, int], gen: torch.Generator, fraction: float):
    """locs (B, steps, 2) with a `fraction` of the entries of samples that have an object box
    replaced by a uniformly random location whose patch (side sizes[b, t]) contains that box."""
    height, width = hw
    locs = locs.clone()
    coins = torch.rand(locs.shape[:2], generator=gen)
    offsets = torch.rand((*locs.shape[:2], 2), generator=gen)  # drawn for every entry: same stream either way
    for b, sample_boxes in enumerate(boxes):
        if not len(sample_boxes):
            continue
        x0, y0, x1, y1 = (float(v) for v in sample_boxes[0])
        for t in range(locs.shape[1]):
            if coins[b, t] >= fraction:
                continue
            size = int(sizes[b, t])
            (top_lo, top_hi), (left_lo, left_hi) = _containing(y0, y1, size, height), _containing(x0, x1, size, width)
            top = top_lo + int(offsets[b, t, 0] * (top_hi - top_lo + 1) - 1e-9) if top_hi > top_lo else top_lo
            left = left_lo + int(offsets[b, t, 1] * (left_hi - left_lo + 1) - 1e-9) if left_hi > left_lo else left_lo
            # focus_boxes places top = floor(row * (H - P)): aim at the middle of that pixel
            locs[b, t, 0] = min((top + 0.5) / max(height - size, 1), 1.0)
            locs[b, t, 1] = min((left + 0.5) / max(width - size, 1), 1.0)
    return locs


def _containing(lo: float, hi: float, size: int, extent: int) -> tuple[int, int]:
    """Start positions of a window of `size` in [0, extent) that contains [lo, hi]."""
    first, last = max(0, math.ceil(hi) - size), min(int(math.floor(lo)), extent - size)
    if first > last:  # the object is larger than the window: centre on it
        start = int(min(max(round((lo + hi) / 2 - size / 2), 0), extent - size))
        return start, start
    return first, last


def centred_crops(boxes: list, size: int, hw: tuple[int, int]):
    """(B, 5) crop boxes centred on the first object box, or on the image centre without one."""
    height, width = hw
    rows = []
    for b, sample_boxes in enumerate(boxes):
        if len(sample_boxes):
            x0, y0, x1, y1 = (float(v) for v in sample_boxes[0])
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        else:
            cx, cy = width / 2, height / 2
        left = int(min(max(round(cx - size / 2), 0), width - size))
        top = int(min(max(round(cy - size / 2), 0), height - size))
        rows.append([b, left, top, left + size, top + size])
    return torch.tensor(rows, dtype=torch.float32)


def object_seen(boxes: list, trace: list, sizes, hw: tuple[int, int]):
    """(B, T) bool: whether sample b's object has been seen by step t (0 = the glance), that is,
    one of the focus patches so far (side sizes[b, t - 1] at trace[t - 1][b]) held the centre of
    its first box (as msgf error-budget counts a sign covered); always True without a box."""
    centres, unseen = object_centres(boxes, "cpu")
    seen = [~unseen]
    for t, where in enumerate(trace):
        patches = ops.focus_boxes(where.detach().float().clamp(0, 1).cpu(), torch.as_tensor(sizes)[:, t].cpu(), hw)
        seen.append(seen[-1] | contains(patches[:, 1:], centres))
    return torch.stack(seen, 1)
