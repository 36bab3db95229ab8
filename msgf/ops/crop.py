"""Batched crop-and-resize: every glance and focus input of msgf comes out of this op.

``crop_resize`` validates its arguments, then calls the registered custom op
``msgf::crop_resize``: the compiled CPU kernel for CPU tensors, the compiled CUDA kernel for
CUDA tensors (or the pure-PyTorch reference when the extension was built without CUDA).
Boxes with different output sizes are produced in one kernel launch; the result groups them
by size.
"""
from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from msgf import _C
from msgf.ops.reference import crop_resize_reference

# Largest output side accepted: bigger requests are almost certainly a units mistake.
MAX_OUT_SIDE = 16384
# Box coordinates beyond this are not representable exactly in float32 pixels.
MAX_COORD = float(2**24)
# Output of one call, all patches together: a request beyond this is a mistake (thousands of
# boxes at a huge side), refused before anything is allocated. Split larger work into calls.
MAX_OUT_BYTES = 2**34

_SRC_TYPES = {torch.uint8: 0, torch.float32: 1}
_OUT_TYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


class CropResult(NamedTuple):
    """``patches[k]`` (B_k, C, h_k, w_k) for the k-th distinct size, ascending;
    ``index[k]`` the rows of ``boxes`` that produced it, in their original order."""

    patches: list[Tensor]
    index: list[Tensor]


def backends() -> dict[str, str]:
    """Which implementation each device uses in this build."""
    return {
        "cpu": "c++ (openmp)" if _C.has_openmp else "c++ (single thread)",
        "cuda": "cuda kernel" if _C.has_cuda else "pytorch reference (built without nvcc)",
    }


# ---------------------------------------------------------------- argument normalisation

def _channels(images: Tensor) -> int:
    return images.shape[-1] if images.dtype == torch.uint8 else images.shape[1]


def _image_hw(images: Tensor) -> tuple[int, int]:
    return (images.shape[1], images.shape[2]) if images.dtype == torch.uint8 else (images.shape[2], images.shape[3])


def _check_images(images) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype not in _SRC_TYPES:
        raise TypeError(f"images must be uint8 (N,H,W,C) or float32 (N,C,H,W), got dtype {images.dtype}")
    if images.dim() != 4:
        raise ValueError(f"images must have rank 4, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8 and images.shape[-1] not in (1, 3, 4):
        hint = " (it looks channels-first; uint8 images are channels-last as decoded)" if images.shape[1] in (1, 3) else ""
        raise ValueError(f"uint8 images must be (N,H,W,C) with C in 1, 3 or 4, got shape {tuple(images.shape)}{hint}")
    if min(images.shape[1:]) < 1:
        raise ValueError(f"images must have non-empty channels, height and width, got shape {tuple(images.shape)}")


def _check_sides(heights: list[int], widths: list[int]) -> None:
    for side in (*heights, *widths):
        if type(side) is not int:  # bool is an int subclass, and not a size
            raise TypeError(f"out_sizes must hold ints, got {side!r} ({type(side).__name__})")
    if heights and (min(min(heights), min(widths)) < 1 or max(max(heights), max(widths)) > MAX_OUT_SIDE):
        bad = next(s for s in (*heights, *widths) if not 1 <= s <= MAX_OUT_SIDE)
        raise ValueError(f"out_sizes must lie in [1, {MAX_OUT_SIDE}], got {bad}")


def _normalise_sizes(out_sizes, num_boxes: int) -> tuple[list[int], list[int]]:
    """``out_sizes`` (int, (B,) or (B,2), list or tensor) -> per-box heights and widths."""
    if isinstance(out_sizes, bool):
        raise TypeError("out_sizes must be an int, a (B,) or (B,2) sequence or tensor of ints, got bool")
    if isinstance(out_sizes, int):
        heights = widths = [out_sizes] * num_boxes
    else:
        if isinstance(out_sizes, Tensor):
            if out_sizes.is_floating_point() or out_sizes.is_complex() or out_sizes.dtype == torch.bool:
                raise TypeError(f"out_sizes must hold integers, got dtype {out_sizes.dtype}")
            out_sizes = out_sizes.tolist()
        elif isinstance(out_sizes, str) or not isinstance(out_sizes, Sequence):
            raise TypeError(f"out_sizes must be an int, a sequence or a tensor of ints, got {type(out_sizes).__name__}")
        if len(out_sizes) != num_boxes:
            raise ValueError(f"out_sizes must have one entry per box ({num_boxes}), got {len(out_sizes)}")
        if all(type(entry) is int for entry in out_sizes):  # the common case: square sides
            heights = widths = list(out_sizes)
        else:
            heights, widths = [], []
            for entry in out_sizes:
                pair = list(entry) if isinstance(entry, (Sequence, Tensor)) and not isinstance(entry, str) else [entry]
                if len(pair) == 1:
                    pair = pair * 2
                if len(pair) != 2:
                    raise ValueError(f"out_sizes rows must be a side or an (h, w) pair, got {entry!r}")
                heights.append(pair[0])
                widths.append(pair[1])
    _check_sides(heights, widths)
    return heights, widths


def _check_output_bytes(heights: list[int], widths: list[int], channels: int, out_dtype: torch.dtype) -> None:
    element = torch.finfo(out_dtype).bits // 8
    total = sum(h * w for h, w in zip(heights, widths)) * channels * element
    if total > MAX_OUT_BYTES:
        raise ValueError(f"out_sizes ask for {total / 2**30:.1f} GiB of patches ({len(heights)} boxes); one call "
                         f"returns at most {MAX_OUT_BYTES / 2**30:.0f} GiB: split the boxes over several calls")


def _normalise_stats(values, channels: int, name: str, default: float) -> list[float]:
    if type(values) is tuple and all(type(v) is float for v in values):  # a model config's: checked once
        return list(_float_stats(values, channels, name))
    if values is None:
        return [default] * channels
    if isinstance(values, (Tensor, np.ndarray)):
        values = values.flatten().tolist()
    elif isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or \
            not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be a number, a sequence of numbers (one per channel) or a tensor, "
                        f"got {values!r}")
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{name} must have one value per channel ({channels}), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite, got {values}")
    if name == "std" and min(values) <= 0:
        raise ValueError(f"std must be positive, got {values}")
    return values


@functools.lru_cache(maxsize=64)
def _float_stats(values: tuple[float, ...], channels: int, name: str) -> tuple[float, ...]:
    return tuple(_normalise_stats(list(values), channels, name, 0.0))


def size_groups(heights: list[int], widths: list[int]) -> list[tuple[tuple[int, int], list[int]]]:
    """Distinct (h, w) sizes in ascending order (by area, then h) with the box rows of each."""
    rows: dict[tuple[int, int], list[int]] = {}
    for b, hw in enumerate(zip(heights, widths)):
        rows.setdefault(hw, []).append(b)
    return sorted(rows.items(), key=lambda item: (item[0][0] * item[0][1], item[0]))


# ---------------------------------------------------------------- the registered op

def _check_boxes(images: Tensor, boxes: Tensor) -> Tensor:
    """Everything the kernel relies on about ``boxes``; returns them as contiguous float32."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if not boxes.is_floating_point():
        raise TypeError(f"boxes must be floating point (B,5), got dtype {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(f"boxes must have shape (B, 5) rows (batch_index, x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if boxes.device != images.device:
        raise ValueError(f"boxes are on {boxes.device} but images on {images.device}; put them on one device")
    boxes = boxes.detach().to(torch.float32).contiguous()
    # Checked on the host in numpy: a handful of tiny tensor ops would cost more than the crop.
    host = (boxes.cpu() if boxes.device.type != "cpu" else boxes).numpy()
    if not np.isfinite(host).all():
        raise ValueError("boxes must be finite (found NaN or inf)")
    batch = host[:, 0]
    if ((batch != np.round(batch)) | (batch < 0) | (batch >= images.shape[0])).any():
        raise ValueError(f"boxes[:, 0] must be integer batch indices in [0, {images.shape[0]}), got {batch.tolist()}")
    if (np.abs(host[:, 1:]) > MAX_COORD).any():
        raise ValueError(f"box coordinates must lie within +-{MAX_COORD:.0f} pixels")
    if ((host[:, 3] <= host[:, 1]) | (host[:, 4] <= host[:, 2])).any():
        raise ValueError("boxes must have x1 > x0 and y1 > y0 (inverted or empty box)")
    return boxes


def _output_buffers(images: Tensor, heights: list[int], widths: list[int], out_dtype: torch.dtype):
    """One tensor per size group plus the int64 job table (out_ptr, h, w) per box."""
    channels = _channels(images)
    element = torch.empty((), dtype=out_dtype).element_size()
    outputs, jobs = [], [None] * len(heights)
    for (h, w), rows in size_groups(heights, widths):
        out = torch.empty((len(rows), channels, h, w), dtype=out_dtype, device=images.device)
        base, stride = out.data_ptr(), channels * h * w * element
        for rank, row in enumerate(rows):
            jobs[row] = (base + rank * stride, h, w)
        outputs.append(out)
    return outputs, torch.tensor(jobs, dtype=torch.int64).reshape(len(heights), 3)


def _kernel_geometry(images: Tensor) -> tuple[list[int], list[int]]:
    """Shape and strides (elements) of ``images`` as an (n, c, h, w) view."""
    if images.dtype == torch.uint8:
        n, h, w, c = images.shape
        sn, sh, sw, sc = images.stride()
        return [n, c, h, w], [sn, sc, sh, sw]
    return list(images.shape), list(images.stride())


def _affine(images: Tensor, mean: list[float], std: list[float]) -> tuple[Tensor, Tensor]:
    """(x / 255 - mean) / std folded into x * scale + shift, in float64 then rounded once."""
    return _folded_affine(255.0 if images.dtype == torch.uint8 else 1.0, tuple(mean), tuple(std))


@functools.lru_cache(maxsize=64)
def _folded_affine(unit: float, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    # Cached: the kernel only reads these (CUDA copies them to the device first).
    scale = torch.tensor([1.0 / (unit * s) for s in std], dtype=torch.float64)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float64)
    return scale.float(), shift.float()


@torch.library.custom_op("msgf::crop_resize", mutates_args=())
def _crop_resize_op(images: Tensor, boxes: Tensor, out_heights: list[int], out_widths: list[int], mean: list[float],
                    std: list[float], antialias: bool, out_dtype: torch.dtype) -> list[Tensor]:
    _check_images(images)
    boxes = _check_boxes(images, boxes)
    heights, widths = _normalise_sizes([list(hw) for hw in zip(out_heights, out_widths)], boxes.shape[0])
    channels = _channels(images)
    mean = _normalise_stats(mean, channels, "mean", 0.0)
    std = _normalise_stats(std, channels, "std", 1.0)
    _check_out_dtype(out_dtype)
    if not isinstance(antialias, bool):
        raise TypeError(f"antialias must be a bool, got {type(antialias).__name__}")
    return _run_crop(images, boxes, heights, widths, mean, std, antialias, out_dtype)


def _check_out_dtype(out_dtype) -> None:
    if out_dtype not in _OUT_TYPES:
        raise TypeError(f"out_dtype must be float32, float16 or bfloat16, got {out_dtype}")


def _run_crop(images: Tensor, boxes: Tensor, heights: list[int], widths: list[int], mean: list[float],
              std: list[float], antialias: bool, out_dtype: torch.dtype) -> list[Tensor]:
    """The crop on checked arguments (``boxes`` from _check_boxes): refuses an output too large,
    then runs the kernel (or the reference where no CUDA kernel was built)."""
    _check_output_bytes(heights, widths, _channels(images), out_dtype)
    if images.is_cuda and not _C.has_cuda:
        return _reference_grouped(images, boxes, heights, widths, mean, std, antialias, out_dtype)
    return _launch_kernel(images, boxes, heights, widths, mean, std, antialias, out_dtype)


def _launch_kernel(images: Tensor, boxes: Tensor, heights: list[int], widths: list[int], mean: list[float],
                   std: list[float], antialias: bool, out_dtype: torch.dtype, direct: bool = False) -> list[Tensor]:
    """Run the compiled kernel on validated arguments (``boxes`` contiguous float32).

    ``direct`` makes the CPU kernel use the per-pixel formulas of the CUDA kernel (tests).
    """
    outputs, jobs = _output_buffers(images, heights, widths, out_dtype)
    if not outputs:
        return outputs
    scale, shift = _affine(images, mean, std)
    shape, strides = _kernel_geometry(images)
    common = dict(src_type=_SRC_TYPES[images.dtype], shape=shape, strides=strides, num_boxes=boxes.shape[0],
                  max_out_pixels=max(h * w for h, w in zip(heights, widths)), out_type=_OUT_TYPES[out_dtype],
                  antialias=antialias)
    if images.is_cuda:
        device = images.device
        jobs, scale, shift = (t.to(device, non_blocking=True) for t in (jobs, scale, shift))
        # Everything here was allocated on the current stream, and the caching allocator
        # reuses freed blocks only in that stream's order: the kernel finishes first.
        _C.crop_resize_cuda(image=images.data_ptr(), boxes=boxes.data_ptr(), jobs=jobs.data_ptr(),
                            scale=scale.data_ptr(), shift=shift.data_ptr(), device=device.index,
                            stream=torch.cuda.current_stream(device).cuda_stream, **common)
    else:
        _C.crop_resize_cpu(image=images.data_ptr(), boxes=boxes.data_ptr(), jobs=jobs.data_ptr(),
                           scale=scale.data_ptr(), shift=shift.data_ptr(), num_threads=torch.get_num_threads(),
                           direct=direct, **common)
    return outputs


@_crop_resize_op.register_fake
def _crop_resize_fake(images, boxes, out_heights, out_widths, mean, std, antialias, out_dtype):
    channels = _channels(images)
    return [images.new_empty((len(rows), channels, h, w), dtype=out_dtype)
            for (h, w), rows in size_groups(list(out_heights), list(out_widths))]


def _reference_grouped(images, boxes, heights, widths, mean, std, antialias, out_dtype) -> list[Tensor]:
    per_box = crop_resize_reference(images, boxes, list(zip(heights, widths)), mean, std, antialias, out_dtype,
                                    compute_dtype=torch.float32)
    return [torch.stack([per_box[b] for b in rows]) for _, rows in size_groups(heights, widths)]


# ---------------------------------------------------------------- public API

def crop_resize(images: Tensor, boxes: Tensor, out_sizes, *, mean=None, std=None, antialias: bool = False,
                out_dtype: torch.dtype = torch.float32) -> CropResult:
    """Crop every box of ``boxes`` from ``images`` and resize it, in one kernel launch.

    Args:
        images: uint8 (N, H, W, C) channels-last as decoded, or float32 (N, C, H, W). uint8 is
            scaled by 1/255 before normalisation; float is used as given.
        boxes: float (B, 5) rows (batch_index, x0, y0, x1, y1) in pixels, as roi_align.
        out_sizes: output side(s): an int for all boxes, (B,) square sides or (B, 2) (h, w).
        mean, std: per-channel normalisation applied inside the kernel (default none).
        antialias: triangle-filter downscaling as ``F.interpolate(antialias=True)``.
        out_dtype: float32, float16 or bfloat16.

    Returns:
        CropResult(patches, index): one (B_k, C, h_k, w_k) tensor per distinct output size in
        ascending order, and the rows of ``boxes`` in each.
    """
    _check_images(images)
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2:
        raise ValueError(f"boxes must have shape (B, 5), got {tuple(boxes.shape)}")
    if not isinstance(antialias, bool):
        raise TypeError(f"antialias must be a bool, got {type(antialias).__name__}")
    if not isinstance(out_dtype, torch.dtype):
        raise TypeError(f"out_dtype must be a torch.dtype, got {type(out_dtype).__name__}")
    _check_out_dtype(out_dtype)
    heights, widths = _normalise_sizes(out_sizes, boxes.shape[0])
    channels = _channels(images)
    mean_list = _normalise_stats(mean, channels, "mean", 0.0)
    std_list = _normalise_stats(std, channels, "std", 1.0)
    if _eager(images, boxes):
        # Everything but the boxes and the output size is checked above: the dispatcher and the
        # op's second round of checks cost more than the crop itself on small problems.
        patches = _run_crop(images, _check_boxes(images, boxes), heights, widths, mean_list, std_list, antialias,
                            out_dtype)
    else:  # torch.compile, torch.export and fake tensors see the registered op
        patches = torch.ops.msgf.crop_resize(images, boxes, heights, widths, mean_list, std_list, antialias, out_dtype)
    index = [torch.tensor(rows, dtype=torch.int64) for _, rows in size_groups(heights, widths)]
    return CropResult(list(patches), index)


def _eager(images: Tensor, boxes: Tensor) -> bool:
    """Plain tensors outside torch.compile, torch.export and torch.jit tracing, with no gradient
    asked of the images: the op can run directly (a tracer must see the registered op, not the
    kernel writing into fresh buffers, and the op says that it has no backward)."""
    return (type(images) is Tensor and type(boxes) is Tensor and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not (images.requires_grad and torch.is_grad_enabled()))


def glance(images: Tensor, size, mean=None, std=None, out_dtype: torch.dtype = torch.float32) -> Tensor:
    """Each whole image resized to ``size`` (int or (h, w)) with antialiasing: (N, C, h, w)."""
    _check_images(images)
    (h,), (w,) = _normalise_sizes([size], 1)
    height, width = _image_hw(images)
    n = images.shape[0]
    if n == 0:
        return images.new_empty((0, _channels(images), h, w), dtype=out_dtype)
    boxes = torch.zeros((n, 5), dtype=torch.float32, device=images.device)
    boxes[:, 0] = torch.arange(n, dtype=torch.float32)
    boxes[:, 3], boxes[:, 4] = float(width), float(height)
    return crop_resize(images, boxes, [(h, w)] * n, mean=mean, std=std, antialias=True, out_dtype=out_dtype).patches[0]
