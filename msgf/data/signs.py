"""Road-sign sprites for the procedural scenes: drawn once at a canonical size, then scaled.

A sprite is an RGBA image whose alpha marks the sign's silhouette. Drawing happens once per
(kind, text) at `CANONICAL` pixels with Pillow (cached); each scene only resizes, blurs and
recolours the small sprite, which keeps per-sign work to a few microseconds of C code.
Digits use the DejaVu Sans Bold font that matplotlib bundles, so no font is downloaded.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CANONICAL = 160  # sprite side in pixels before scaling; signs in scenes are at most ~60 px

TARGET_TEXTS = ("50", "70", "80")
# Speed-limit-like numbers that are not a class: a red ring with digits that the model must
# *read* to reject. 60 and 30 share strokes with 50/80 on purpose.
DECOY_TEXTS = ("20", "30", "40", "60", "90", "100", "110", "120")
# Red-ringed signs without digits (no vehicles, no overtaking, no parking).
RING_DECOY_KINDS = ("ring_empty", "ring_cars", "no_parking")
# Signs of other shapes and colours.
OTHER_KINDS = ("warning", "yield", "mandatory", "info", "priority", "stop", "no_entry")

RED = (200, 20, 30)
WHITE = (245, 245, 240)
BLACK = (15, 15, 15)
BLUE = (20, 70, 170)
YELLOW = (245, 200, 20)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold"),
                                 fallback_to_default=True)
    return ImageFont.truetype(path, size)


def _centred_text(draw: ImageDraw.ImageDraw, text: str, max_width: float, max_height: float, fill) -> None:
    """Draw `text` as large as fits (max_width, max_height), centred on the sprite."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=_font(100))
    font = _font(max(8, int(100 * min(max_width / (right - left), max_height / (bottom - top)))))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    c = (CANONICAL - 1) / 2
    draw.text((c - (left + right) / 2, c - (top + bottom) / 2), text, font=font, fill=fill)


def _disc(draw: ImageDraw.ImageDraw, inset: float, fill) -> None:
    draw.ellipse((inset, inset, CANONICAL - 1 - inset, CANONICAL - 1 - inset), fill=fill)


def _regular_polygon(sides: int, radius: float, rotation_deg: float) -> list[tuple[float, float]]:
    c = (CANONICAL - 1) / 2
    return [(c + radius * math.cos(math.radians(rotation_deg + 360 * k / sides)),
             c + radius * math.sin(math.radians(rotation_deg + 360 * k / sides))) for k in range(sides)]


@functools.lru_cache(maxsize=64)
def sprite(kind: str, text: str = "") -> Image.Image:
    """The canonical RGBA sprite of a sign; `text` is the number of a `speed` sign."""
    image = Image.new("RGBA", (CANONICAL, CANONICAL), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    c, ring = (CANONICAL - 1) / 2, 0.11 * CANONICAL
    if kind in ("speed", "ring_empty", "ring_cars"):
        _disc(draw, 0, RED)
        _disc(draw, ring, WHITE)
        if kind == "speed":
            _centred_text(draw, text, (0.58 if len(text) == 2 else 0.66) * CANONICAL, 0.42 * CANONICAL, BLACK)
        elif kind == "ring_cars":
            for dx, colour in ((-0.17, BLACK), (0.17, RED)):
                x = c + dx * CANONICAL
                draw.rounded_rectangle((x - 0.12 * CANONICAL, c - 0.1 * CANONICAL, x + 0.12 * CANONICAL,
                                        c + 0.12 * CANONICAL), radius=6, fill=colour)
    elif kind == "no_parking":
        _disc(draw, 0, RED)
        _disc(draw, ring, BLUE)
        draw.line((c - 0.3 * CANONICAL, c + 0.3 * CANONICAL, c + 0.3 * CANONICAL, c - 0.3 * CANONICAL),
                  fill=RED, width=int(0.1 * CANONICAL))
    elif kind == "no_entry":
        _disc(draw, 0, RED)
        draw.rectangle((0.2 * CANONICAL, c - 0.09 * CANONICAL, 0.8 * CANONICAL, c + 0.09 * CANONICAL), fill=WHITE)
    elif kind == "mandatory":
        _disc(draw, 0, BLUE)
        draw.polygon([(c, 0.18 * CANONICAL), (0.3 * CANONICAL, 0.5 * CANONICAL), (0.7 * CANONICAL, 0.5 * CANONICAL)],
                     fill=WHITE)
        draw.rectangle((c - 0.07 * CANONICAL, 0.5 * CANONICAL, c + 0.07 * CANONICAL, 0.8 * CANONICAL), fill=WHITE)
    elif kind == "info":
        draw.rounded_rectangle((4, 4, CANONICAL - 5, CANONICAL - 5), radius=12, fill=BLUE)
        _centred_text(draw, "P", 0.6 * CANONICAL, 0.6 * CANONICAL, WHITE)
    elif kind == "priority":
        draw.polygon(_regular_polygon(4, c, 0), fill=WHITE)
        draw.polygon(_regular_polygon(4, 0.72 * c, 0), fill=YELLOW)
    elif kind == "stop":
        draw.polygon(_regular_polygon(8, c, 22.5), fill=RED)
        _centred_text(draw, "STOP", 0.72 * CANONICAL, 0.3 * CANONICAL, WHITE)
    elif kind in ("warning", "yield"):
        rotation = -90 if kind == "warning" else 90
        draw.polygon(_regular_polygon(3, c, rotation), fill=RED)
        draw.polygon(_regular_polygon(3, 0.62 * c, rotation), fill=YELLOW if kind == "warning" else WHITE)
        if kind == "warning":
            draw.rectangle((c - 5, c - 12, c + 5, c + 22), fill=BLACK)
    else:
        raise ValueError(f"sign kind: unknown kind {kind!r}")
    return image


def render(kind: str, text: str, width: int, height: int, blur: float, brightness: float,
           red_shift: int) -> Image.Image:
    """A sprite scaled to (width, height) px with blur (Gaussian radius, px), brightness gain
    and a hue shift of its reds (added to green/blue of reddish pixels), as RGBA."""
    image = sprite(kind, text).resize((width, height), Image.LANCZOS, reducing_gap=2.0)
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    rgb = np.asarray(image, np.float32)
    colour = rgb[:, :, :3] * brightness
    if red_shift:
        reddish = (rgb[:, :, 0] > 120) & (rgb[:, :, 1] < 90)
        colour[:, :, 1:] += reddish[:, :, None] * red_shift
    rgb[:, :, :3] = colour
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGBA")
