"""Train-time augmentation on uint8 HWC tensors, moving boxes with the pixels.

Two recipes: `road_augment` for road scenes (brightness/contrast a*I + b and panning, the
speed-limit recipe of the attention-sampling paper) and `photo_augment` for object photos
(random-resized-crop and horizontal flip). Both take an explicit numpy Generator; datasets
draw it from torch's RNG (`torch_seeded_rng`) so that DataLoader worker seeding, and so
`torch.manual_seed`, governs them and every epoch sees new draws.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

BRIGHTNESS_GAIN = (0.8, 1.2)     # a
BRIGHTNESS_OFFSET = (-0.1, 0.1)  # b, as a fraction of 255
BRIGHTNESS_PROBABILITY = 0.8
PAN_PIXELS = 100
PAN_PROBABILITY = 0.8
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


def torch_seeded_rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def brightness_contrast(image: torch.Tensor, gain: float, offset: float) -> torch.Tensor:
    """round(gain * I + offset) clamped to uint8, through a 256-entry table (no float image)."""
    lut = np.clip(np.rint(np.arange(256) * gain + offset), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.take(lut, image.numpy()))


def pan(image: torch.Tensor, boxes: torch.Tensor, dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift the content by (dx, dy) pixels; uncovered pixels become 0."""
    height, width = image.shape[:2]
    out = torch.zeros_like(image)
    src_y, dst_y = slice(max(0, -dy), min(height, height - dy)), slice(max(0, dy), min(height, height + dy))
    src_x, dst_x = slice(max(0, -dx), min(width, width - dx)), slice(max(0, dx), min(width, width + dx))
    out[dst_y, dst_x] = image[src_y, src_x]
    return out, boxes + torch.tensor([dx, dy, dx, dy], dtype=boxes.dtype)


def road_augment(sample: dict, rng: np.random.Generator) -> dict:
    """Brightness/contrast (p=0.8) and a pan of up to +-100 px per axis (p=0.8).

    The pan range is narrowed so that every box stays inside the image: panning a sign out of
    view would leave a sample whose label no longer matches its pixels.
    """
    image, boxes = sample["image"], sample["boxes"]
    if rng.random() < BRIGHTNESS_PROBABILITY:
        image = brightness_contrast(image, rng.uniform(*BRIGHTNESS_GAIN), 255 * rng.uniform(*BRIGHTNESS_OFFSET))
    if rng.random() < PAN_PROBABILITY:
        height, width = image.shape[:2]
        lo_x, hi_x, lo_y, hi_y = -PAN_PIXELS, PAN_PIXELS, -PAN_PIXELS, PAN_PIXELS
        if len(boxes):
            lo_x = max(lo_x, math.ceil(-float(boxes[:, 0].min())))
            hi_x = min(hi_x, math.floor(width - float(boxes[:, 2].max())))
            lo_y = max(lo_y, math.ceil(-float(boxes[:, 1].min())))
            hi_y = min(hi_y, math.floor(height - float(boxes[:, 3].max())))
        dx = int(rng.integers(lo_x, hi_x + 1)) if hi_x >= lo_x else 0
        dy = int(rng.integers(lo_y, hi_y + 1)) if hi_y >= lo_y else 0
        image, boxes = pan(image, boxes, dx, dy)
    return {**sample, "image": image, "boxes": boxes}


def _crop_boxes(boxes: torch.Tensor, top: int, left: int, height: int, width: int,
                out_size: tuple[int, int]) -> torch.Tensor:
    """Boxes clipped to a crop window and scaled to out_size; boxes left empty are dropped."""
    if not len(boxes):
        return boxes
    shifted = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
    clipped = torch.stack([shifted[:, 0].clamp(0, width), shifted[:, 1].clamp(0, height),
                           shifted[:, 2].clamp(0, width), shifted[:, 3].clamp(0, height)], dim=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    scale = torch.tensor([out_size[1] / width, out_size[0] / height] * 2, dtype=boxes.dtype)
    return clipped[keep] * scale


def resized_crop(image: torch.Tensor, boxes: torch.Tensor, top: int, left: int, height: int, width: int,
                 out_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop (top, left, height, width) and resize it to out_size (antialiased, stays uint8)."""
    chw = TF.resized_crop(image.permute(2, 0, 1), top, left, height, width, list(out_size), antialias=True)
    return chw.permute(1, 2, 0).contiguous(), _crop_boxes(boxes, top, left, height, width, out_size)


def resize(sample: dict, size: tuple[int, int]) -> dict:
    image = sample["image"]
    if tuple(image.shape[:2]) == tuple(size):
        return sample
    resized, boxes = resized_crop(image, sample["boxes"], 0, 0, image.shape[0], image.shape[1], size)
    return {**sample, "image": resized, "boxes": boxes}


def photo_augment(sample: dict, rng: np.random.Generator, size: tuple[int, int] | None = None) -> dict:
    """Random-resized-crop (scale 0.08-1, ratio 3/4-4/3, as torchvision) to `size` (default: the
    input size), then a horizontal flip with p=0.5."""
    image, boxes = sample["image"], sample["boxes"]
    height, width = image.shape[:2]
    out_size = (height, width) if size is None else tuple(size)
    top, left, crop_h, crop_w = 0, 0, height, width
    for _ in range(10):  # torchvision's rejection sampling, then the whole image as fallback
        area = height * width * rng.uniform(*RRC_SCALE)
        ratio = math.exp(rng.uniform(math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])))
        w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top, left, crop_h, crop_w = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
            break
    image, boxes = resized_crop(image, boxes, top, left, crop_h, crop_w, out_size)
    if rng.random() < 0.5:
        image, boxes = image.flip(1).contiguous(), flip_boxes(boxes, out_size[1])
    return {**sample, "image": image, "boxes": boxes}


def flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """(K, 4) x0, y0, x1, y1 boxes of an image `width` wide, after mirroring it left-right."""
    if not len(boxes):
        return boxes
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
