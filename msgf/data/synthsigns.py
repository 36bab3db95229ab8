"""Procedural speed-limit scenes: the built-in dataset that needs no download.

A stand-in for the Swedish Traffic Signs speed-limit task that is hard for the same reason:
the evidence (the digits of one small sign) is a few pixels wide in a 96x96 glance, and the
glance cannot even tell whether a sign is a target, because every scene holds red-ringed
decoys drawn by the same code (other numbers, no digits) and red blobs.

Classes: EMPTY, 50, 70, 80; EMPTY is half the data. A scene of class 50/70/80 holds exactly
one target sign; its box (x0, y0, x1, y1) in pixels travels with the sample.

What keeps the glance blind: the number of red-ringed circular signs in a scene is drawn
from the same distribution for every class (a target *replaces* one decoy), and targets and
decoys share size, placement, blur, brightness and occlusion distributions. Only the digits
differ.

Determinism: scene `index` of `split` under `seed` is a pure function of those three values
(numpy's PCG64 seeded with SeedSequence([seed, split_code, index])), the image size and the
installed Pillow/numpy versions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from msgf.data import signs
from msgf.data.augment import torch_seeded_rng
from msgf.data.textures import TEXTURE_MARGIN, texture_bank

CLASSES = ["EMPTY", "50", "70", "80"]
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZE = (960, 1280)
DEFAULT_NUM_SAMPLES = {"train": 20000, "val": 2000, "test": 2000}
MIN_SIZE = 64

# Sign diameter as a fraction of the image height (issue 3: roughly 2-6%).
SIGN_FRACTION = (0.02, 0.06)
EMPTY_PROBABILITY = 0.5
RING_SIGNS_PER_SCENE = (1, 3)      # red-ringed circular signs, target included, inclusive
OTHER_SIGNS_PER_SCENE = (0, 3)
RED_BLOBS_PER_SCENE = (1, 4)
OCCLUSION_PROBABILITY = 0.15


@dataclass
class Scene:
    image: np.ndarray            # uint8 (H, W, 3)
    label: int                   # index into CLASSES
    box: np.ndarray | None       # float32 (4,) x0, y0, x1, y1 of the target sign, None for EMPTY
    decoy_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    # boxes of the red-ringed decoys: lets experiments crop a decoy as a hard EMPTY example


def _check_size(image_size) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise TypeError(f"image_size: expected (height, width), got {image_size!r}") from None
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"image_size: both sides must be >= {MIN_SIZE}, got {image_size!r}")
    return height, width


def scene_rng(split: str, index: int, seed: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {sorted(SPLITS)}, got {split!r}")
    if index < 0:
        raise ValueError(f"index: must be >= 0, got {index}")
    if seed < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


class _Painter:
    """Paints one scene onto a Pillow canvas, cutting surfaces from the texture bank."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.height, self.width = rng, height, width
        self.bank = texture_bank(height, width)
        self.canvas = Image.new("RGB", (width, height))
        self.offset = tuple(int(v) for v in rng.integers(0, TEXTURE_MARGIN + 1, size=2))

    def _texture(self, surface: str, box: tuple[int, int, int, int]) -> Image.Image:
        """A crop of a random texture of `surface` covering scene box (x0, y0, x1, y1), tinted."""
        textures = self.bank[surface]
        texture = textures[int(self.rng.integers(len(textures)))]
        ox, oy = self.offset
        crop = texture.crop((box[0] + ox, box[1] + oy, box[2] + ox, box[3] + oy))
        # mostly a change of exposure, with a mild colour cast
        gain = self.rng.uniform(0.75, 1.2) * self.rng.uniform(0.92, 1.08, size=3)
        lut = np.clip(np.arange(256)[None, :] * gain[:, None], 0, 255).astype(np.uint8)
        return crop.point(lut.ravel().tolist())

    def fill(self, surface: str, box, polygon=None, ellipse: bool = False) -> None:
        """Fill a box, or the polygon/ellipse inside it, with a texture of `surface`."""
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(self.width, int(box[2])), min(self.height, int(box[3]))
        if x1 - x0 < 2 or y1 - y0 < 2:  # nothing visible to draw (tiny scenes)
            return
        patch = self._texture(surface, (x0, y0, x1, y1))
        mask = None
        if polygon is not None or ellipse:
            mask = Image.new("L", (x1 - x0, y1 - y0), 0)
            draw = ImageDraw.Draw(mask)
            if ellipse:
                draw.ellipse((box[0] - x0, box[1] - y0, box[2] - x0 - 1, box[3] - y0 - 1), fill=255)
            else:
                draw.polygon([(px - x0, py - y0) for px, py in polygon], fill=255)
        self.canvas.paste(patch, (x0, y0), mask)

    def background(self) -> float:
        """Sky, skyline, ground, road and cars; returns the horizon row."""
        h, w, rng = self.height, self.width, self.rng
        horizon = h * rng.uniform(0.38, 0.55)
        self.fill("sky", (0, 0, w, int(horizon) + 1))
        x = -rng.uniform(0, 0.1 * w)
        while x < w:  # skyline: facades and tree clumps of varied width and height
            block_w = w * rng.uniform(0.06, 0.22)
            top = horizon - h * rng.uniform(0.04, 0.3)
            if rng.random() < 0.65:
                self.fill("facade", (x, top, x + block_w, horizon + 2))
            else:
                self.fill("vegetation", (x, top, x + block_w, horizon + 0.1 * h), ellipse=True)
            x += block_w * rng.uniform(0.7, 1.1)
        self.fill("vegetation", (0, int(horizon), w, h))
        vanish = w * rng.uniform(0.3, 0.7)
        left, right = -w * rng.uniform(0.1, 0.5), w * rng.uniform(1.1, 1.5)
        road = [(vanish - 0.02 * w, horizon), (vanish + 0.02 * w, horizon), (right, h), (left, h)]
        self.fill("road", (min(left, 0), horizon, max(right, w), h), polygon=road)
        draw = ImageDraw.Draw(self.canvas)
        for t0 in np.arange(rng.uniform(0, 0.1), 1.0, 0.12):  # dashed centre line, in perspective
            t1 = t0 + 0.06
            ya, yb = horizon + (h - horizon) * t0 ** 2, horizon + (h - horizon) * t1 ** 2
            xa = vanish + (w * 0.5 - vanish) * t0 ** 2
            xb = vanish + (w * 0.5 - vanish) * t1 ** 2
            half_a, half_b = 1 + 0.006 * w * t0 ** 2, 1 + 0.006 * w * t1 ** 2
            draw.polygon([(xa - half_a, ya), (xa + half_a, ya), (xb + half_b, yb), (xb - half_b, yb)],
                         fill=(225, 225, 215))
        for _ in range(int(rng.integers(0, 4))):  # cars: a body and two red tail lights
            t = rng.uniform(0.15, 0.9)
            cy = horizon + (h - horizon) * t
            car_w = w * 0.2 * t + 4
            cx = vanish + (w * rng.uniform(0.2, 0.8) - vanish) * t
            body = tuple(int(v) for v in rng.integers(20, 230, size=3))
            draw.rounded_rectangle((cx - car_w / 2, cy - 0.45 * car_w, cx + car_w / 2, cy),
                                   radius=max(1, int(car_w * 0.1)), fill=body)
            lamp = max(1.0, 0.08 * car_w)
            for side in (-1, 1):
                lx = cx + side * 0.38 * car_w
                draw.ellipse((lx - lamp, cy - 0.25 * car_w - lamp, lx + lamp, cy - 0.25 * car_w + lamp),
                             fill=(210, 25, 25))
        return horizon

    def red_blobs(self, count: int, diameter_range: tuple[float, float]) -> None:
        """Red ellipses (flowers, lamps, balloons): red evidence that is not a sign."""
        draw = ImageDraw.Draw(self.canvas)
        for _ in range(count):
            dw, dh = self.rng.uniform(*diameter_range, size=2)
            x, y = self.rng.uniform(0, self.width - dw), self.rng.uniform(0.05, 0.9) * (self.height - dh)
            red = (int(self.rng.integers(170, 240)), int(self.rng.integers(0, 60)), int(self.rng.integers(0, 60)))
            draw.ellipse((x, y, x + dw, y + dh), fill=red)

    def sign(self, kind: str, text: str, diameter: float, box: tuple[float, float, float, float],
             ground: float) -> None:
        """A sign on its pole; mild blur, brightness change and occasional partial occlusion."""
        rng = self.rng
        x0, y0, x1, y1 = box
        pole_w = max(1.0, 0.08 * diameter)
        cx = (x0 + x1) / 2
        ImageDraw.Draw(self.canvas).rectangle((cx - pole_w / 2, y1 - 1, cx + pole_w / 2, max(ground, y1)),
                                              fill=tuple(int(v) for v in rng.integers(90, 160, size=3)))
        sprite = signs.render(kind, text, int(round(x1 - x0)), int(round(y1 - y0)),
                              blur=rng.uniform(0.0, 0.9) * diameter / 40, brightness=rng.uniform(0.65, 1.15),
                              red_shift=int(rng.integers(0, 40)))
        self.canvas.paste(sprite, (int(round(x0)), int(round(y0))), sprite)
        if rng.random() < OCCLUSION_PROBABILITY:
            # foliage over at most about a third of the sign, from one side
            side = rng.choice([-1.0, 1.0])
            ox = cx + side * diameter * rng.uniform(0.55, 0.8)
            oy = (y0 + y1) / 2 + diameter * rng.uniform(-0.4, 0.4)
            r = diameter * rng.uniform(0.35, 0.5)
            self.fill("vegetation", (ox - r, oy - r, ox + r, oy + r), ellipse=True)

    def adjust(self) -> np.ndarray:
        """Global exposure change, as a camera would make; returns the uint8 array."""
        a, b = self.rng.uniform(0.85, 1.15), self.rng.uniform(-15, 15)
        lut = np.clip(np.arange(256) * a + b, 0, 255).astype(np.uint8).tolist()
        return np.array(self.canvas.point(lut * 3))  # a writable copy: torch.from_numpy needs one


def _place_signs(rng: np.random.Generator, count: int, height: int, width: int,
                 horizon: float) -> list[tuple[float, tuple[float, float, float, float], float]]:
    """(diameter, box, ground row) for `count` non-overlapping signs where signs stand."""
    placed: list[tuple[float, tuple[float, float, float, float], float]] = []
    for _ in range(count * 20):
        if len(placed) == count:
            break
        diameter = height * rng.uniform(*SIGN_FRACTION)
        sign_w = diameter * rng.uniform(0.8, 1.0)  # some signs are seen at an angle
        if rng.random() < 0.85:  # roadside, left or right
            cx = width * (rng.uniform(0.03, 0.35) if rng.random() < 0.5 else rng.uniform(0.65, 0.97))
        else:
            cx = width * rng.uniform(0.03, 0.97)
        cy = height * rng.uniform(0.12, 0.5)
        box = (cx - sign_w / 2, cy - diameter / 2, cx + sign_w / 2, cy + diameter / 2)
        if box[0] < 1 or box[2] > width - 1 or box[1] < 1 or box[3] > height - 1:
            continue
        if any(box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2 and b[1] < box[3] + 2
               for _, b, _ in placed):
            continue
        ground = max(horizon, box[3]) + (height - horizon) * rng.uniform(0.02, 0.15)
        placed.append((diameter, box, ground))
    return placed


def render_scene(index: int, split: str = "train", seed: int = 0,
                 image_size: tuple[int, int] = DEFAULT_SIZE) -> Scene:
    """Scene `index` of `split` under `seed`: image, label and the target's box."""
    height, width = _check_size(image_size)
    rng = scene_rng(split, index, seed)
    label = 0 if rng.random() < EMPTY_PROBABILITY else 1 + int(rng.integers(3))
    painter = _Painter(rng, height, width)
    horizon = painter.background()

    n_ring = int(rng.integers(RING_SIGNS_PER_SCENE[0], RING_SIGNS_PER_SCENE[1] + 1))
    n_other = int(rng.integers(OTHER_SIGNS_PER_SCENE[0], OTHER_SIGNS_PER_SCENE[1] + 1))
    places = _place_signs(rng, n_ring + n_other, height, width, horizon)
    # the target, if any, takes the place of the first ring decoy; the rest are drawn the same way
    target_box, decoy_boxes = None, []
    for slot, (diameter, box, ground) in enumerate(places):
        if slot == 0 and label > 0:
            kind, text = "speed", CLASSES[label]
            target_box = box
        elif slot < n_ring:
            if rng.random() < 0.7:
                kind, text = "speed", signs.DECOY_TEXTS[int(rng.integers(len(signs.DECOY_TEXTS)))]
            else:
                kind, text = signs.RING_DECOY_KINDS[int(rng.integers(len(signs.RING_DECOY_KINDS)))], ""
            decoy_boxes.append(box)
        else:
            kind, text = signs.OTHER_KINDS[int(rng.integers(len(signs.OTHER_KINDS)))], ""
        painter.sign(kind, text, diameter, box, ground)
    painter.red_blobs(int(rng.integers(RED_BLOBS_PER_SCENE[0], RED_BLOBS_PER_SCENE[1] + 1)),
                      (height * SIGN_FRACTION[0] * 0.5, height * SIGN_FRACTION[1]))
    image = painter.adjust()
    if label > 0 and target_box is None:
        # placement failed for every slot (tiny images only); keep the label honest
        label = 0
    return Scene(image=image, label=label,
                 box=None if target_box is None else np.asarray(target_box, np.float32),
                 decoy_boxes=np.asarray(decoy_boxes, np.float32).reshape(-1, 4))


class SynthSigns(torch.utils.data.Dataset):
    """Scenes generated on the fly; items follow msgf.data.open_dataset's contract."""

    classes = CLASSES

    def __init__(self, split: str = "train", *, seed: int = 0, num_samples: int | None = None,
                 image_size: tuple[int, int] | None = None, transform=None):
        scene_rng(split, 0, seed)  # validates split and seed
        self.split, self.seed = split, seed
        self.image_size = _check_size(DEFAULT_SIZE if image_size is None else image_size)
        if num_samples is None:
            num_samples = DEFAULT_NUM_SAMPLES[split]
        if int(num_samples) < 1:
            raise ValueError(f"num_samples: must be >= 1, got {num_samples}")
        self.num_samples = int(num_samples)
        self.transform = transform

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} scenes")
        scene = render_scene(index, self.split, self.seed, self.image_size)
        boxes = torch.zeros((0, 4)) if scene.box is None else torch.from_numpy(scene.box[None].copy())
        sample = {"image": torch.from_numpy(scene.image), "label": scene.label, "boxes": boxes, "path": None}
        if self.transform is not None:
            # augmentation draws from torch's RNG: new draws every epoch, seeded per DataLoader worker
            sample = self.transform(sample, torch_seeded_rng())
        return sample
