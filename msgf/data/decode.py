"""Decoding image files to uint8 RGB arrays, with errors that name the file.

Hostile files are refused before anything of the size they claim is allocated:
- only regular files are opened: a directory, a FIFO (which would block), a device or a symlink
  loop is named as such (`file_problem`);
- only the formats in DECODE_FORMATS are parsed, whatever the suffix (Pillow would otherwise try
  each of its plugins on a file it does not recognise);
- an image whose header claims more than MAX_IMAGE_PIXELS pixels is refused from the header,
  before decoding (ImageTooLargeError). Such images are better stored as tiled TIFF, which
  msgf.data.regions reads region by region.
"""
from __future__ import annotations

import errno
import os
import stat

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
# Pillow formats decode_image parses (JPEG includes cameras' multi-picture MPO; PPM reads PGM/PBM too)
DECODE_FORMATS = ("JPEG", "PNG", "BMP", "PPM", "TIFF", "WEBP", "GIF")
# Pixels an image file may claim: Pillow's own decompression-bomb limit (which only warns up to
# twice this); about 9459 x 9459, 270 MB decoded as RGB. Raise it for real images that are larger.
MAX_IMAGE_PIXELS = 89_478_485


class CorruptImageError(ValueError):
    """A file that cannot be opened or decoded as an image; the message names the file."""


class ImageTooLargeError(CorruptImageError):
    """An image whose header claims more pixels than the limit; the message names the file."""


def file_problem(path: str) -> str | None:
    """Why `path` cannot be opened as an image file ("is a directory", ...), or None if it is a
    regular file. Checked before opening: a FIFO would block open(), and a directory or a symlink
    loop deserves its own name rather than an errno."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a dangling symlink" if os.path.islink(path) else "does not exist"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symlink loop (too many levels of symbolic links)"
        return f"cannot be read ({error.strerror or error})"
    except ValueError as error:  # an embedded NUL byte
        return f"is not a valid path ({error})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


def check_pixels(name: str, width: int, height: int) -> None:
    """ImageTooLargeError if an image of width x height exceeds MAX_IMAGE_PIXELS."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(
            f"image file {name!r} claims {width} x {height} = {width * height:,} pixels, more than "
            f"msgf.data.decode.MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS:,}; if it is a real image, raise that limit "
            f"or store it as a tiled TIFF, which is read region by region")


def _formats() -> list[str]:
    """DECODE_FORMATS that this Pillow build reads (WebP support is optional)."""
    Image.init()
    return [f for f in DECODE_FORMATS if f in Image.OPEN]


def _open(name: str) -> Image.Image:
    """The image opened (header only) and checked against the limits; errors name the file."""
    problem = file_problem(name)
    if problem is not None:
        raise CorruptImageError(f"cannot decode image file {name!r}: it {problem}")
    try:
        image = Image.open(name, formats=_formats())
    except Image.DecompressionBombError as error:  # Pillow's own limit, twice PIL.Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(f"image file {name!r}: {error} If it is a real image, raise "
                                 f"PIL.Image.MAX_IMAGE_PIXELS and msgf.data.decode.MAX_IMAGE_PIXELS, "
                                 f"or store it as a tiled TIFF") from error
    except Exception as error:  # Pillow's plugins raise many types on malformed headers
        raise CorruptImageError(f"cannot decode image file {name!r}: {error}") from error
    try:
        check_pixels(name, *image.size)
    except ImageTooLargeError:
        image.close()
        raise
    return image


def check_image_file(path: str | os.PathLike) -> None:
    """Open `path`'s header as decode_image would, without decoding: CorruptImageError (or
    ImageTooLargeError) naming the file if it would be refused before decoding."""
    _open(os.fspath(path)).close()


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """The whole image as uint8 (H, W, 3) RGB; palette, gray and alpha images are converted."""
    name = os.fspath(path)
    with _open(name) as image:
        try:
            image.load()  # decode fully now: a truncated file must fail here, not later
            if image.mode != "RGB":
                image = image.convert("RGB")
            return np.asarray(image).copy()
        except Exception as error:  # codec errors come as many types; name the file whatever they are
            raise CorruptImageError(f"cannot decode image file {name!r}: {error}") from error
