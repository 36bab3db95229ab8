"""Texture sources for the procedural road scenes of `msgf.data.synthsigns`.

Every surface of a scene (sky, facades, vegetation, road) is cut from a full-scene-sized
texture image, so filling a region is a crop and a paste in Pillow's C code rather than
per-pixel Python. The textures are either procedural (multi-octave value noise) or derived
from the photographs scikit-image ships with its package (no download). They depend only on
the scene size and a fixed seed, so every scene under every seed draws from the same bank.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

# How far a scene may shift its view into a texture, so one texture does not line up with the
# scene grid the same way in every image.
TEXTURE_MARGIN = 64
_BANK_SEED = 20240611

# (surface, scikit-image sample name); grayscale photos are tinted per scene.
_PHOTO_SOURCES = (
    ("facade", "brick"),
    ("facade", "rocket"),
    ("facade", "coffee"),
    ("facade", "astronaut"),
    ("facade", "chelsea"),
    ("facade", "immunohistochemistry"),
    ("facade", "camera"),
    ("facade", "text"),
    ("vegetation", "grass"),
    ("road", "gravel"),
)


def _value_noise(rng: np.random.Generator, height: int, width: int, octaves: int, base_cell: int) -> np.ndarray:
    """Fractal value noise in [0, 1], float32 (height, width): random grids upsampled bicubically."""
    total = np.zeros((height, width), np.float32)
    amplitude, weight, cell = 1.0, 0.0, base_cell
    for _ in range(octaves):
        grid = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
        up = Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC)
        total += amplitude * np.asarray(up, np.float32)
        weight += amplitude
        amplitude *= 0.5
        cell = max(2, cell // 2)
    total /= weight
    lo, hi = np.percentile(total, [1, 99])
    return np.clip((total - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _mirror_tile(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """Repeat a photo by mirroring so that the tiling has no seams, cut to (height, width)."""
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    photo = photo[:, :, :3]
    pad_h, pad_w = max(0, height - photo.shape[0]), max(0, width - photo.shape[1])
    tiled = np.pad(photo, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(tiled[:height, :width])


def _colourise(gray: np.ndarray, dark: tuple[float, float, float], light: tuple[float, float, float]) -> np.ndarray:
    """Map a [0, 1] field onto a colour ramp from `dark` to `light` (RGB in 0..255)."""
    dark_a, light_a = np.asarray(dark, np.float32), np.asarray(light, np.float32)
    rgb = dark_a + gray[:, :, None] * (light_a - dark_a)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _procedural(rng: np.random.Generator, height: int, width: int) -> list[tuple[str, np.ndarray]]:
    out = []
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    for top, bottom in (((70, 120, 200), (190, 215, 240)), ((150, 155, 165), (215, 218, 222)),
                        ((110, 150, 215), (235, 225, 200))):
        clouds = _value_noise(rng, height, width, octaves=4, base_cell=96)
        ramp = _colourise(np.broadcast_to(rows, (height, width)), top, bottom).astype(np.float32)
        cloudy = ramp + (clouds[:, :, None] ** 2) * (255.0 - ramp) * 0.6
        out.append(("sky", np.clip(cloudy, 0, 255).astype(np.uint8)))
    for dark, light in (((20, 45, 15), (90, 140, 50)), ((35, 55, 20), (130, 150, 60))):
        out.append(("vegetation", _colourise(_value_noise(rng, height, width, 5, 32), dark, light)))
    for dark, light in (((45, 45, 48), (120, 120, 125)), ((60, 58, 55), (140, 135, 130))):
        out.append(("road", _colourise(_value_noise(rng, height, width, 5, 8), dark, light)))
    for dark, light in (((90, 60, 50), (200, 170, 150)), ((70, 75, 90), (190, 195, 205))):
        facade = _colourise(_value_noise(rng, height, width, 3, 48), dark, light)
        # a window grid: darker rectangles on a regular lattice
        yy = (np.arange(height) % 40) < 24
        xx = (np.arange(width) % 32) < 18
        windows = (yy[:, None] & xx[None, :])[:, :, None]
        out.append(("facade", np.where(windows, facade // 3, facade)))
    return out


@functools.lru_cache(maxsize=4)
def texture_bank(height: int, width: int) -> dict[str, list[Image.Image]]:
    """Textures of (height + margin, width + margin) grouped by the surface they cover."""
    import skimage.data  # imported lazily: it is slow to import and only needed here

    rng = np.random.default_rng(_BANK_SEED)
    full_h, full_w = height + TEXTURE_MARGIN, width + TEXTURE_MARGIN
    bank: dict[str, list[Image.Image]] = {}
    for surface, array in _procedural(rng, full_h, full_w):
        bank.setdefault(surface, []).append(Image.fromarray(array))
    for surface, name in _PHOTO_SOURCES:
        photo = getattr(skimage.data, name)()
        bank.setdefault(surface, []).append(Image.fromarray(_mirror_tile(photo, full_h, full_w)))
    return bank
