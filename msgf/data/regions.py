"""Read regions and glances of (very) large images without decoding them whole.

`open_image(path)` returns a reader with
  .shape                  (H, W, C) of the full-resolution image,
  .read_region(y, x, h, w) uint8 (h, w, C): pixels [y, y+h) x [x, x+w) at full resolution,
  .read_glance(h, w)       uint8 (h, w, C): the whole image, antialiased, resized to (h, w).

Regions must lie inside the image: an argument that would reach outside raises ValueError
naming it. The model's focus patches always lie inside the image (design.md section 4), so a
region outside is a caller's bug, and silently padding it would hide that.

TIFF (tiled, stripped, pyramidal) is read through tifffile's zarr store, so a region decodes
only the tiles it touches. The glance reads the smallest pyramid level that is still at
least (h, w); a level larger than GLANCE_DIRECT_PIXELS is reduced strip by strip (integer
block means down to about twice the glance size, then one antialiased resize), so memory
stays bounded by a strip, not by the image. Other formats (JPEG, PNG, ...) are decoded once
when opened.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from msgf.data.decode import CorruptImageError, decode_image

GLANCE_DIRECT_PIXELS = 16_000_000   # levels up to this size are read whole for the glance
GLANCE_STRIP_BYTES = 16 * 2**20     # otherwise, strips of about this many bytes
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ome.tif")


def _int_arg(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return int(value)


def _check_region(shape: tuple[int, int, int], y, x, h, w) -> tuple[int, int, int, int]:
    y, x, h, w = (_int_arg(n, v) for n, v in (("y", y), ("x", x), ("h", h), ("w", w)))
    height, width = shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"{'h' if h < 1 else 'w'}: region size must be >= 1, got h={h}, w={w}")
    if y < 0 or y + h > height:
        raise ValueError(f"y: region rows [{y}, {y + h}) reach outside the image's {height} rows")
    if x < 0 or x + w > width:
        raise ValueError(f"x: region columns [{x}, {x + w}) reach outside the image's {width} columns")
    return y, x, h, w


def _check_glance(h, w) -> tuple[int, int]:
    h, w = _int_arg("h", h), _int_arg("w", w)
    if h < 1 or w < 1:
        raise ValueError(f"{'h' if h < 1 else 'w'}: glance size must be >= 1, got h={h}, w={w}")
    return h, w


def antialiased_resize(image: np.ndarray, h: int, w: int,
                       extent: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (h, w, C), Pillow's antialiased bilinear per channel.

    The same filter as torch's interpolate(antialias=True) (up to uint8 rounding); Pillow
    rather than torch so that reading regions never imports torch, whose import alone
    costs ~700 MB of peak RSS with the CUDA build. `extent` (rows, cols), possibly fractional,
    resizes only that top-left part of the image (pixels beyond it feed the filter's edge taps).
    """
    box = None if extent is None else (0.0, 0.0, float(extent[1]), float(extent[0]))
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize((w, h), Image.BILINEAR, box))
                for c in range(image.shape[2])]
    return np.stack(channels, axis=-1)


def _as_hwc(array: np.ndarray) -> np.ndarray:
    return array[:, :, None] if array.ndim == 2 else array


class ArrayImage:
    """A decoded image held in memory (JPEG, PNG, ...)."""

    def __init__(self, array: np.ndarray, path: str | None = None):
        self.array, self.path = _as_hwc(array), path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def read_region(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        y, x, h, w = _check_region(self.shape, y, x, h, w)
        return self.array[y:y + h, x:x + w].copy()

    def read_glance(self, h: int, w: int) -> np.ndarray:
        return antialiased_resize(self.array, *_check_glance(h, w))

    def close(self) -> None:
        pass


class TiffImage:
    """A TIFF read lazily through zarr: one array per pyramid level, level 0 full resolution."""

    def __init__(self, path: str):
        import tifffile
        import zarr

        self.path = path
        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            if series.axes not in ("YX", "YXS"):
                raise ValueError(f"axes {series.axes!r} (only YX and YXS images are supported)")
            self.levels = [zarr.open(series.aszarr(level=k), mode="r") for k in range(len(series.levels))]
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as error:
            if hasattr(self, "_tif"):
                self._tif.close()
            raise CorruptImageError(f"cannot read TIFF file {path!r}: {error}") from error

    @property
    def shape(self) -> tuple[int, int, int]:
        shape = self.levels[0].shape
        return (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)

    def _read(self, level: int, rows: slice, cols: slice) -> np.ndarray:
        try:
            return _as_hwc(np.asarray(self.levels[level][rows, cols]))
        except Exception as error:  # codec errors come as many types; name the file whatever they are
            raise CorruptImageError(f"cannot decode tiles of TIFF file {self.path!r}: {error}") from error

    def read_region(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        y, x, h, w = _check_region(self.shape, y, x, h, w)
        return self._read(0, slice(y, y + h), slice(x, x + w))

    def glance_level(self, h: int, w: int) -> int:
        """The smallest pyramid level still at least (h, w): least to read, no upsampling."""
        best = 0
        for k, level in enumerate(self.levels):
            if level.shape[0] >= h and level.shape[1] >= w:
                best = k
        return best

    def read_glance(self, h: int, w: int) -> np.ndarray:
        h, w = _check_glance(h, w)
        level = self.glance_level(h, w)
        level_h, level_w = self.levels[level].shape[:2]
        if level_h * level_w <= GLANCE_DIRECT_PIXELS:
            return antialiased_resize(self._read(level, slice(None), slice(None)), h, w)
        factor = max(1, math.floor(min(level_h / h, level_w / w) / 2))
        # the reduced image is padded to whole blocks; resize exactly the part the level covers
        return antialiased_resize(self._block_reduced(level, factor), h, w, (level_h / factor, level_w / factor))

    def _block_reduced(self, level: int, factor: int) -> np.ndarray:
        """Level `level` reduced by `factor` with block means, read in strips of rows.

        A partial block at the right/bottom edge is padded by repeating the edge pixels.
        """
        level_h, level_w = self.levels[level].shape[:2]
        channels = self.shape[2]
        strip_rows = max(factor, (GLANCE_STRIP_BYTES // (level_w * channels)) // factor * factor)
        out_w = math.ceil(level_w / factor)
        parts = []
        for top in range(0, level_h, strip_rows):
            strip = self._read(level, slice(top, min(level_h, top + strip_rows)), slice(None))
            pad_rows = -strip.shape[0] % factor
            pad_cols = -level_w % factor
            if pad_rows or pad_cols:
                strip = np.pad(strip, ((0, pad_rows), (0, pad_cols), (0, 0)), mode="edge")
            blocks = strip.reshape(strip.shape[0] // factor, factor, out_w, factor, channels)
            sums = blocks.sum(axis=(1, 3), dtype=np.uint32)
            parts.append(((sums + factor * factor // 2) // (factor * factor)).astype(np.uint8))
        return np.concatenate(parts, axis=0)

    def close(self) -> None:
        self._tif.close()


def open_image(path: str | os.PathLike) -> ArrayImage | TiffImage:
    """A region reader for `path`: lazy for TIFF, decoded once for other formats."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not Path(path).is_file():
        raise ValueError(f"path: {path!r} is not a file")
    if path.lower().endswith(TIFF_SUFFIXES):
        return TiffImage(path)
    return ArrayImage(decode_image(path), path)
