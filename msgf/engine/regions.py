"""The region image source: glances and focus patches read from region readers, not a batch.

A reader is anything with `.shape` (H, W, C), `.read_region(y, x, h, w)` and
`.read_glance(h, w)` returning uint8 (h, w, C), like `msgf.data.regions.open_image(path)`.
Images in one batch may differ in size. The whole image is never needed:

- glance: a lazy reader (tiled/pyramidal TIFF) hands over `read_glance(g, g)`, already at the
  glance size; a reader that holds its decoded pixels (`.array`, JPEG/PNG) hands over those,
  so that its glance is the very resize `predict` does on the decoded array.
- focus: each patch is `read_region` at the box `msgf.ops.focus_boxes` gives for the policy's
  location in *that* image's size, with a one-pixel margin, placed near the top-left of a
  small per-step canvas.

Both then go through the model's own step API (`model.glance`, `model.focus`), so the crop op
normalises them exactly as it does a decoded batch: a patch is a box with whole-pixel corners
and its own side, which the op copies without resampling. Hence a JPEG read as a region
reader gives bit-identical predictions to the decoded array (tests/infer checks this).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from msgf import ops
from msgf.data.regions import as_rgb, check_readers, read_patch_with_margin, reader_name  # noqa: F401 (part of this module's API)
from msgf.models.state import GFState


def patch_box(loc: Tensor, side: int, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in image pixels of the side-`side` patch at policy location `loc` (row, col)."""
    box = ops.focus_boxes(loc.detach().float().clamp(0.0, 1.0).cpu()[None], side, image_hw)[0, 1:]
    return tuple(int(v) for v in box.tolist())


class RegionSource:
    """Image source over region readers (see the module docstring); used by `predict_from`."""

    def __init__(self, readers):
        self.readers = readers = check_readers(readers)
        self.image_hw = [tuple(int(v) for v in reader.shape[:2]) for reader in readers]

    def __len__(self) -> int:
        return len(self.readers)

    def glance(self, model) -> GFState:
        cfg = model.config
        smallest = min(min(hw) for hw in self.image_hw)
        if smallest < max(cfg.patch_sizes):
            name = reader_name(self.readers[[min(hw) for hw in self.image_hw].index(smallest)])
            raise ValueError(f"readers: {name} is {smallest} px on its short side, smaller than the "
                             f"model's largest patch ({max(cfg.patch_sizes)} px)")
        device = _device(model)
        with warnings.catch_warnings():  # decoded pixels may be read-only; the crop only reads them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            inputs = [torch.from_numpy(self._glance_pixels(reader, cfg.glance_size)).to(device)
                      for reader in self.readers]
        # Each image is resized alone (they may differ in size, and a stacked copy of the batch
        # would double its memory); the full (H, W), not the glance-sized read's, goes with it:
        # pi's spatial head places patches by it.
        return model.glance(inputs, torch.tensor(self.image_hw, dtype=torch.float32))

    def focus(self, model, state: GFState, proposal, sides: Tensor) -> GFState:
        locs, side_list = proposal.mean.detach().cpu(), sides.tolist()
        largest = max(side_list)
        # Patch b sits at (1, 1) of canvas row state.index[b], inside a one-pixel margin
        # (read_patch_with_margin); location `where` puts the crop of its own side exactly there.
        canvas = torch.zeros((len(self.readers), largest + 2, largest + 2, 3), dtype=torch.uint8)
        where = torch.zeros_like(proposal.mean)
        for b, (row, side) in enumerate(zip(state.index.tolist(), side_list)):
            x0, y0, _, _ = patch_box(locs[b], side, self.image_hw[row])
            canvas[row, :side + 2, :side + 2] = torch.from_numpy(read_patch_with_margin(self.readers[row], y0, x0, side))
            # focus_boxes: top = floor(l * (H - P)); aim at the middle of pixel 1
            where[b] = 1.5 / (largest + 2 - side)
        return model.focus(state, canvas.to(_device(model)), where, sides, proposal=proposal)

    @staticmethod
    def _glance_pixels(reader, size: int) -> np.ndarray:
        array = getattr(reader, "array", None)
        pixels = array if isinstance(array, np.ndarray) else reader.read_glance(size, size)
        return as_rgb(np.asarray(pixels), reader_name(reader))


def _device(model) -> torch.device:
    return next(model.parameters()).device
