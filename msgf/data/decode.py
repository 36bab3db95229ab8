"""Decoding image files to uint8 RGB arrays, with errors that name the file."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class CorruptImageError(ValueError):
    """A file that cannot be opened or decoded as an image; the message names the file."""


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """The whole image as uint8 (H, W, 3) RGB; palette, gray and alpha images are converted."""
    try:
        with Image.open(path) as image:
            image.load()  # decode fully now: a truncated file must fail here, not later
            if image.mode != "RGB":
                image = image.convert("RGB")
            return np.asarray(image).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise CorruptImageError(f"cannot decode image file {os.fspath(path)!r}: {error}") from error
