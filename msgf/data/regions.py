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
least (h, w); a level larger than GLANCE_DIRECT_PIXELS is reduced piece by piece (integer
block means down to about twice the glance size, then one antialiased resize), so memory
stays bounded by a piece of GLANCE_STRIP_BYTES, not by the image, its width or the reduction
factor. Other formats (JPEG, PNG, ...) are decoded once when opened (msgf.data.decode, with
its MAX_IMAGE_PIXELS).

A TIFF's tags are checked when it is opened, before any pixel is read, so that a file cannot
make the reader allocate what its header claims: every level's size must be at most
MAX_TIFF_PIXELS, each tile or strip at most MAX_TIFF_CHUNK_BYTES decoded, the number of tile or
strip offsets must match the size and tile shape, and every tile must lie inside the file. A
JPEG or JPEG 2000 tile whose own header claims more pixels than the TIFF's tile shape is refused
before it is decoded. Each refusal is a CorruptImageError naming the file (ImageTooLargeError
for the size limits); a path that is not a regular file is a ValueError naming `path`.
"""
from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from msgf.data.decode import CorruptImageError, ImageTooLargeError, decode_image, file_problem

GLANCE_DIRECT_PIXELS = 16_000_000   # levels up to this size are read whole for the glance
GLANCE_STRIP_BYTES = 16 * 2**20     # otherwise, pieces of about this many bytes
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ome.tif")
# Limits on what a TIFF's tags may claim; raise them for real images that are larger.
MAX_TIFF_PIXELS = 10**11            # per level: 100 gigapixels, beyond the largest whole-slide scans
MAX_TIFF_CHUNK_BYTES = 2**30        # one tile or strip, decoded
# TIFF compressions whose tiles carry their own image header (and so their own claimed size)
_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}
_JPEG2000_COMPRESSIONS = {33003, 33004, 33005, 34712}


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


def as_rgb(pixels: np.ndarray, name: str) -> np.ndarray:
    """uint8 (h, w, C) with C in 1, 3, 4 -> (h, w, 3): gray repeated, alpha dropped, like decode_image."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError(f"{name}: expected uint8 (h, w, C) pixels, got {pixels.dtype} {pixels.shape}")
    if pixels.shape[2] == 3:
        return pixels
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    if pixels.shape[2] == 4:
        return pixels[:, :, :3]
    raise ValueError(f"{name}: expected 1, 3 or 4 channels, got {pixels.shape[2]}")


def read_patch_with_margin(reader, y0: int, x0: int, side: int) -> np.ndarray:
    """uint8 (side + 2, side + 2, 3): the reader's side x side patch at (y0, x0) inside a
    one-pixel margin, the image's edge repeated where the image ends. A patch resized up for
    f_L (GFConfig.patch_input_sizes) reads up to one pixel around its box, as the crop op does
    in the whole image, where it clamps to the edge; cut from this canvas at (1, 1) with its
    own side, it is resampled exactly as in the whole image."""
    height, width = int(reader.shape[0]), int(reader.shape[1])
    top, left = max(y0 - 1, 0), max(x0 - 1, 0)
    bottom, right = min(y0 + side + 1, height), min(x0 + side + 1, width)
    pixels = as_rgb(np.asarray(reader.read_region(top, left, bottom - top, right - left)), reader_name(reader))
    pad = ((top - (y0 - 1), y0 + side + 1 - bottom), (left - (x0 - 1), x0 + side + 1 - right), (0, 0))
    return np.pad(pixels, pad, mode="edge")


def as_arrays(images) -> list[np.ndarray]:
    """A uint8 (N, H, W, C) array or a non-empty list of uint8 (H, W[, C]) arrays -> contiguous
    (H, W, C) arrays, one per image (a 2-D image gets a channel axis)."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"images: expected a uint8 (N, H, W, C) batch, got shape {images.shape}")
        images = list(images)
    if not isinstance(images, (list, tuple)) or not images:
        raise TypeError(f"images: expected a uint8 (N, H, W, C) array or a non-empty list of (H, W, C) arrays, "
                        f"got {type(images).__name__}")
    arrays = []
    for k, array in enumerate(images):
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise TypeError(f"images[{k}]: expected a uint8 (H, W, C) array, got "
                            f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}")
        arrays.append(np.ascontiguousarray(array[:, :, None] if array.ndim == 2 else array))
    return arrays


def check_readers(readers) -> list:
    """`readers` as a non-empty list of region readers (.shape, .read_region, .read_glance)."""
    if isinstance(readers, (str, bytes)) or not hasattr(readers, "__iter__"):
        raise TypeError(f"readers: expected a sequence of region readers, got {type(readers).__name__}")
    readers = list(readers)
    if not readers:
        raise ValueError("readers: expected a non-empty sequence of region readers")
    for reader in readers:
        missing = [a for a in ("shape", "read_region", "read_glance") if not hasattr(reader, a)]
        if missing:
            raise TypeError(f"readers: {type(reader).__name__} is not a region reader (no {', '.join(missing)})")
    return readers


def reader_name(reader) -> str:
    return str(getattr(reader, "path", None) or type(reader).__name__)


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
            if series.dtype != np.uint8:
                raise ValueError(f"samples of type {series.dtype} (only 8-bit images are supported)")
            for k, level in enumerate(series.levels):
                _check_tiff_level(path, k, level, self._tif.filehandle.size)
            self.levels = [zarr.open(series.aszarr(level=k), mode="r") for k in range(len(series.levels))]
        except Exception as error:  # tifffile and zarr raise many types on malformed files
            if hasattr(self, "_tif"):
                self._tif.close()
            if isinstance(error, CorruptImageError):
                raise
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
        """Level `level` reduced by `factor` with block means, read piece by piece.

        A partial block at the right/bottom edge is padded by repeating the edge pixels. Pieces
        hold about GLANCE_STRIP_BYTES whatever the level's width and the factor: strips of whole
        block rows at full width where a block row fits, else whole block rows in groups of
        block columns, else parts of one block column's rows; their sums accumulate.
        """
        level_h, level_w = self.levels[level].shape[:2]
        channels = self.shape[2]
        budget = max(1, GLANCE_STRIP_BYTES // channels)  # pixels per piece
        if factor * level_w <= budget:
            rows, cols = budget // level_w // factor * factor, level_w
        elif factor * factor <= budget:
            rows, cols = factor, budget // factor // factor * factor
        else:
            rows, cols = max(1, budget // factor), factor
        # the narrowest type that holds a block's sum (factor^2 * 255), so that the sums, which are
        # as many as the reduced image's samples, stay within a few bytes each
        acc = np.uint16 if factor <= 16 else np.uint32 if factor <= 4104 else np.uint64
        sums = np.zeros((math.ceil(level_h / factor), math.ceil(level_w / factor), channels), acc)
        for top in range(0, level_h, rows):
            bottom = min(level_h, top + rows)
            # piece rows -> block rows: a block row starts where the image row is a multiple of factor
            starts = np.unique(np.r_[0, np.arange(-top % factor, bottom - top, factor)])
            first = top // factor
            for left in range(0, level_w, cols):
                piece = self._read(level, slice(top, bottom), slice(left, min(level_w, left + cols)))
                pad_cols = -piece.shape[1] % factor  # only at the right edge: cols is a multiple of factor
                if pad_cols:
                    piece = np.pad(piece, ((0, 0), (0, pad_cols), (0, 0)), mode="edge")
                blocks_w = piece.shape[1] // factor
                row_sums = piece.reshape(piece.shape[0], blocks_w, factor, channels).sum(axis=2, dtype=acc)
                block = slice(left // factor, left // factor + blocks_w)
                sums[first:first + len(starts), block] += np.add.reduceat(row_sums, starts, axis=0, dtype=acc)
                if bottom == level_h and level_h % factor:  # the bottom block row repeats the last row
                    sums[-1, block] += row_sums[-1] * acc(-level_h % factor)
        # rounded means, (sum + area // 2) // area without overflowing acc
        area = acc(factor * factor)
        means, remainders = np.divmod(sums, area)
        return (means + (remainders >= (area + acc(1)) // acc(2))).astype(np.uint8)

    def close(self) -> None:
        self._tif.close()


def open_image(path: str | os.PathLike) -> ArrayImage | TiffImage:
    """A region reader for `path`: lazy for TIFF, decoded once for other formats."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    problem = file_problem(path)
    if problem is not None:
        raise ValueError(f"path: {path!r} {problem}")
    if path.lower().endswith(TIFF_SUFFIXES):
        return TiffImage(path)
    return ArrayImage(decode_image(path), path)


def _check_tiff_level(path: str, k: int, level, file_size: int) -> None:
    """CorruptImageError (ImageTooLargeError for sizes) unless pyramid level k's tags are sane:
    checked from the tags alone, before any pixel is read or allocated."""
    height, width = (int(v) for v in level.shape[:2])
    where = f"TIFF file {path!r}" + (f", level {k}," if k else "")
    if height < 1 or width < 1:
        raise CorruptImageError(f"{where} claims an empty image of {height} x {width} pixels")
    if height * width > MAX_TIFF_PIXELS:
        raise ImageTooLargeError(
            f"{where} claims {height} x {width} = {height * width:,} pixels, more than "
            f"msgf.data.regions.MAX_TIFF_PIXELS = {MAX_TIFF_PIXELS:,}; if it is a real image, raise that limit")
    for page in level.pages:
        page = page.keyframe if page.keyframe is not None else page
        chunk_bytes = math.prod(int(v) for v in page.chunks) * page.dtype.itemsize
        if chunk_bytes > MAX_TIFF_CHUNK_BYTES:
            raise ImageTooLargeError(
                f"{where} claims tiles or strips of {' x '.join(str(v) for v in page.chunks)} samples "
                f"({chunk_bytes:,} bytes decoded), more than msgf.data.regions.MAX_TIFF_CHUNK_BYTES = "
                f"{MAX_TIFF_CHUNK_BYTES:,}; if it is a real image, raise that limit")
        expected = math.prod(int(v) for v in page.chunked)
        offsets, counts = page.dataoffsets, page.databytecounts
        if len(offsets) != expected or len(counts) != expected:
            raise CorruptImageError(
                f"{where} claims {height} x {width} pixels in {expected:,} tiles or strips of "
                f"{' x '.join(str(v) for v in page.chunks[:2])}, but lists {len(offsets):,} offsets and "
                f"{len(counts):,} byte counts")
        ends = np.asarray(offsets, np.int64) + np.asarray(counts, np.int64)
        past = np.flatnonzero((np.asarray(counts, np.int64) > 0) & (ends > file_size))
        if len(past):
            raise CorruptImageError(
                f"{where}: {len(past):,} of its {expected:,} tiles or strips lie past the end of the file "
                f"(the first ends at byte {int(ends[past[0]]):,}, the file has {file_size:,}): truncated or corrupt")
        if page.compression in _JPEG_COMPRESSIONS | _JPEG2000_COMPRESSIONS:
            _guard_tile_headers(page)


def _guard_tile_headers(page) -> None:
    """Make `page` check each JPEG / JPEG 2000 tile's own header before decoding it: the codec
    allocates what that header claims, which may be far more than the TIFF's tile shape.

    tifffile's zarr store decodes every tile through `page.decode` (a cached property holding
    a closure); the checked closure is set on this page object only, never on tifffile itself.
    """
    decode = page.decode
    rows, cols = int(page.chunks[0]), int(page.chunks[1])
    header_size = _jpeg_size if page.compression in _JPEG_COMPRESSIONS else _jpeg2000_size

    def checked(data, index, /, **kwargs):
        if data is not None:
            size = header_size(data)
            if size is None and kwargs.get("jpegheader"):
                size = header_size(kwargs["jpegheader"])
            if size is not None and (size[0] > rows or size[1] > cols):
                raise ValueError(f"tile {index} claims {size[0]} x {size[1]} pixels in its own header, "
                                 f"the TIFF's tiles are {rows} x {cols}")
        return decode(data, index, **kwargs)

    page.__dict__["decode"] = checked


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data) -> tuple[int, int] | None:
    """(rows, cols) from a JPEG stream's frame header, or None where there is none before the scan."""
    data = bytes(data[:65536])
    at = 2 if data[:2] == b"\xff\xd8" else 0
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no frame header before it
            return None
        if marker in _JPEG_SOF:
            if at + 9 > len(data):
                return None
            return int.from_bytes(data[at + 5:at + 7], "big"), int.from_bytes(data[at + 7:at + 9], "big")
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


def _jpeg2000_size(data) -> tuple[int, int] | None:
    """(rows, cols) from a JPEG 2000 codestream's SIZ marker, or None where there is none."""
    data = bytes(data[:65536])
    at = data.find(b"\xff\x4f\xff\x51")
    if at < 0 or at + 24 > len(data):
        return None
    xsiz, ysiz, xosiz, yosiz = (int.from_bytes(data[at + 8 + 4 * i:at + 12 + 4 * i], "big") for i in range(4))
    return max(0, ysiz - yosiz), max(0, xsiz - xosiz)
