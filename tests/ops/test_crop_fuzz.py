"""Fuzzing of the crop operator's boundary: valid and invalid arguments, drawn at random.

Valid problems (uint8 and float images of random shape, strides and storage offsets, 1x1
images, empty batches and box lists, boxes anywhere from inside to far outside the image,
every out_dtype) must match the float64 reference. Invalid ones (NaN, inf and huge boxes,
inverted corners, bad batch indices, absurd out sizes, bad mean/std and dtypes) must raise
ValueError or TypeError, through the wrapper and through the bare `torch.ops` op alike.

The case count is a hypothesis profile: MSGF_FUZZ_PROFILE=quick (default, `make test`) or
sanitize (`make sanitize`, where the kernels run under ASan and UBSan: 10,000 cases for each
of the two tests, 20,000 per ISA build).
"""
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from msgf.ops import crop_resize
from msgf.ops.crop import MAX_COORD, MAX_OUT_BYTES, MAX_OUT_SIDE
from msgf.ops.reference import crop_resize_reference

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
               derandomize=False)
settings.register_profile("quick", max_examples=150, **_COMMON)
settings.register_profile("sanitize", max_examples=10_000, **_COMMON)
PROFILE = settings.get_profile(os.environ.get("MSGF_FUZZ_PROFILE", "quick"))
OUT_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@st.composite
def images(draw, max_side: int = 20):
    """uint8 (N, H, W, C) or float32 (N, C, H, W) views with arbitrary strides and offsets: a
    slice of a larger tensor, a step along a spatial axis, a channel subset, another layout."""
    uint8 = draw(st.booleans())
    n = draw(st.integers(0, 3))
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    channels = draw(st.sampled_from([1, 3, 4])) if uint8 else draw(st.integers(1, 5))
    step_h, step_w = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    extra_n, extra_c = draw(st.integers(0, 2)), draw(st.integers(0, 1))
    layout = draw(st.sampled_from(["contiguous", "channels-first", "channels-last"]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    shape = (n + extra_n, channels + extra_c, height * step_h, width * step_w)  # planar (N, C, H, W)
    if uint8:
        base = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        base = base.permute(0, 2, 3, 1)  # (N, H, W, C) view of planar storage: channel stride H*W
        if layout != "channels-first":
            base = base.contiguous()
        view = base[extra_n:, ::step_h, ::step_w, extra_c:]
    else:
        base = torch.rand(shape, generator=generator) * 4 - 2
        if layout == "channels-last":
            base = base.contiguous(memory_format=torch.channels_last)
        view = base[extra_n:, extra_c:, ::step_h, ::step_w]
    return view


def _coordinate(draw, extent: int) -> float:
    kind = draw(st.sampled_from(["inside", "near", "far", "integer"]))
    if kind == "integer":
        return float(draw(st.integers(-2, extent + 2)))
    spread = {"inside": 0.0, "near": 0.5, "far": 50.0}[kind]
    return draw(st.floats(-spread, 1 + spread, allow_nan=False)) * extent


@st.composite
def valid_problems(draw):
    imgs = draw(images())
    n = imgs.shape[0]
    channels = imgs.shape[-1] if imgs.dtype == torch.uint8 else imgs.shape[1]
    height, width = (imgs.shape[1], imgs.shape[2]) if imgs.dtype == torch.uint8 else imgs.shape[2:]
    num_boxes = draw(st.integers(1, 5)) if n else 0
    boxes, sizes = [], []
    for _ in range(num_boxes):
        xa, xb = sorted([_coordinate(draw, width), _coordinate(draw, width)])
        ya, yb = sorted([_coordinate(draw, height), _coordinate(draw, height)])
        min_side = draw(st.sampled_from([1e-3, 0.25, 1.0]))
        boxes.append([draw(st.integers(0, n - 1)), xa, ya, max(xb, xa + min_side), max(yb, ya + min_side)])
        sizes.append((draw(st.integers(1, 12)), draw(st.integers(1, 12))))
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(num_boxes, 5)
    per_channel = draw(st.booleans())
    mean = [draw(st.floats(-1, 1)) for _ in range(channels if per_channel else 1)]
    std = [draw(st.floats(0.05, 4)) for _ in range(channels if per_channel else 1)]
    return imgs, boxes, sizes, mean, std, draw(st.booleans()), draw(st.sampled_from(OUT_DTYPES))


@settings(PROFILE)
@given(valid_problems())
def test_valid_arguments_match_the_float64_reference(problem):
    imgs, boxes, sizes, mean, std, antialias, out_dtype = problem
    result = crop_resize(imgs, boxes, sizes, mean=mean, std=std, antialias=antialias, out_dtype=out_dtype)
    if len(boxes) == 0:
        assert result.patches == [] and result.index == []
        return
    channels = imgs.shape[-1] if imgs.dtype == torch.uint8 else imgs.shape[1]
    mean_c, std_c = (v * channels if len(v) == 1 else v for v in (mean, std))
    # Boxes as the kernel sees them: float32 (the reference would otherwise run in float64
    # coordinates and disagree by the rounding of the input, not of the operator).
    expected = crop_resize_reference(imgs, boxes, sizes, mean_c, std_c, antialias, torch.float64)
    scale = (1.0 if imgs.dtype == torch.uint8 else 2.0) / min(std_c) + max(abs(m) for m in mean_c) / min(std_c)
    ulp = {torch.float32: 0.0, torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}[out_dtype]
    seen = []
    for group, rows in zip(result.patches, result.index):
        assert group.dtype == out_dtype and group.is_contiguous()
        for patch, row in zip(group, rows.tolist()):
            seen.append(row)
            want = expected[row]
            assert patch.shape == (channels, *sizes[row])
            tolerance = 1e-4 * scale + ulp * float(want.abs().max())
            assert float((patch.double() - want).abs().max()) <= tolerance, (row, boxes[row].tolist())
    assert sorted(seen) == list(range(len(boxes)))


# ---------------------------------------------------------------- invalid arguments

BAD_BOX_VALUES = [math.nan, math.inf, -math.inf, 1e30, -1e30, MAX_COORD * 2]


@st.composite
def invalid_problems(draw):
    """A valid call with exactly one argument broken; (name of the fault, call kwargs)."""
    imgs = draw(images(max_side=8))
    if imgs.shape[0] == 0:  # a batch to index into
        imgs = torch.zeros((1, *imgs.shape[1:]), dtype=imgs.dtype)
    n = imgs.shape[0]
    channels = imgs.shape[-1] if imgs.dtype == torch.uint8 else imgs.shape[1]
    height, width = (imgs.shape[1], imgs.shape[2]) if imgs.dtype == torch.uint8 else imgs.shape[2:]
    num_boxes = draw(st.integers(1, 4))
    boxes = torch.tensor([[0, 0.0, 0.0, float(width), float(height)]] * num_boxes)
    call = dict(images=imgs, boxes=boxes, out_sizes=4, mean=None, std=None, antialias=False, out_dtype=torch.float32)
    bare = draw(st.booleans())  # through torch.ops.msgf.crop_resize, skipping the wrapper
    fault = draw(st.sampled_from([
        "box value", "inverted box", "empty box", "batch index", "fractional batch index", "box shape",
        "box dtype", "out size", "out size type", "out size count", "absurd output", "mean length", "std length",
        "std value", "mean value", "stat type", "out dtype", "image dtype", "image rank", "uint8 channels",
        "empty image", "antialias type"]))
    row, col = draw(st.integers(0, num_boxes - 1)), draw(st.integers(1, 4))
    if fault == "box value":
        boxes[row, col] = draw(st.sampled_from(BAD_BOX_VALUES))
    elif fault == "inverted box":
        axis = draw(st.sampled_from([(1, 3), (2, 4)]))
        boxes[row, axis[0]], boxes[row, axis[1]] = boxes[row, axis[1]], boxes[row, axis[0]]
    elif fault == "empty box":
        boxes[row, 3] = boxes[row, 1]
    elif fault == "batch index":
        boxes[row, 0] = draw(st.sampled_from([n, n + 7, -1, 2.0**40]))
    elif fault == "fractional batch index":
        boxes[row, 0] = 0.5
    elif fault == "box shape":
        call["boxes"] = draw(st.sampled_from([boxes[:, 1:], boxes[0], boxes[None]]))
    elif fault == "box dtype":
        call["boxes"] = boxes.to(draw(st.sampled_from([torch.int64, torch.int32, torch.bool])))
    elif fault == "out size":
        call["out_sizes"] = draw(st.sampled_from([0, -1, -(2**40), MAX_OUT_SIDE + 1, 2**40]))
    elif fault == "out size type":
        call["out_sizes"] = draw(st.sampled_from([4.0, True, "4", None, [4.5] * num_boxes, torch.tensor([4.0])]))
    elif fault == "out size count":
        call["out_sizes"] = [4] * (num_boxes + draw(st.sampled_from([-1, 1])))
    elif fault == "absurd output":
        # every side allowed alone, the whole far beyond memory: refused before allocating
        call["boxes"] = boxes[:1].repeat(2048, 1)
        call["out_sizes"] = MAX_OUT_SIDE
    elif fault == "mean length":
        call["mean"] = [0.5] * (channels + 1)
    elif fault == "std length":
        call["std"] = [0.5] * (channels + draw(st.sampled_from([1, 2])))
    elif fault == "std value":
        call["std"] = draw(st.sampled_from([0.0, -1.0, math.nan, math.inf, -0.0]))
    elif fault == "mean value":
        call["mean"] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    elif fault == "stat type":
        call[draw(st.sampled_from(["mean", "std"]))] = draw(st.sampled_from(["0.5", object(), [[0.5, 0.5]], {}]))
    elif fault == "out dtype":
        call["out_dtype"] = draw(st.sampled_from([torch.float64, torch.int32, torch.uint8, "float32", None]))
    elif fault == "image dtype":
        call["images"] = imgs.to(draw(st.sampled_from([torch.float64, torch.int32, torch.float16, torch.bool])))
    elif fault == "image rank":
        call["images"] = imgs[0]
    elif fault == "uint8 channels":
        call["images"] = torch.zeros((n, height, width, 2), dtype=torch.uint8)
    elif fault == "empty image":
        call["images"] = imgs[:, :0] if imgs.dtype == torch.uint8 else imgs[:, :, :0]
    elif fault == "antialias type":
        # torch's schema turns 0, 1 and None into bools on the bare op (as for any torch op): only the
        # wrapper refuses them
        call["antialias"] = draw(st.sampled_from(["yes"] if bare else [1, 0, "yes", None]))
    return fault, call, bare


def _bare_op(images, boxes, out_sizes, mean, std, antialias, out_dtype):
    """The registered op without the wrapper: sizes as (heights, widths) lists, stats as lists."""
    channels = images.shape[-1] if images.dtype == torch.uint8 and images.dim() == 4 else 3
    if isinstance(out_sizes, int) and not isinstance(out_sizes, bool):
        heights = widths = [out_sizes] * (boxes.shape[0] if boxes.dim() == 2 else 1)
    elif isinstance(out_sizes, list):
        heights = widths = out_sizes
    else:
        heights = widths = out_sizes  # the wrong type goes through as it is
    mean = [0.0] * channels if mean is None else mean
    std = [1.0] * channels if std is None else std
    mean = mean if isinstance(mean, list) else [mean]
    std = std if isinstance(std, list) else [std]
    return torch.ops.msgf.crop_resize(images, boxes, heights, widths, mean, std, antialias, out_dtype)


@settings(PROFILE)
@given(invalid_problems())
def test_invalid_arguments_raise_value_or_type_errors(problem):
    fault, call, bare = problem
    runner = _bare_op if bare else (lambda **kw: crop_resize(kw.pop("images"), kw.pop("boxes"),
                                                             kw.pop("out_sizes"), **kw))
    # RuntimeError is what torch's own schema check raises for an argument of the wrong type
    # on the bare op (it never reaches our code); the wrapper must give ValueError/TypeError.
    expected = (ValueError, TypeError, RuntimeError) if bare else (ValueError, TypeError)
    with pytest.raises(expected) as caught:
        runner(**call)
    event(f"{'bare op' if bare else 'wrapper'}: {fault} -> {type(caught.value).__name__}")
    if bare and isinstance(caught.value, RuntimeError):
        assert "argument" in str(caught.value) or "expected" in str(caught.value).lower(), (fault, caught.value)


def test_an_absurd_output_is_refused_before_any_allocation(monkeypatch):
    """2048 boxes at the largest side: 6.6 TB of float32, refused by arithmetic, not by the
    allocator (torch.empty is never reached)."""
    def no_alloc(*args, **kwargs):
        raise AssertionError("allocated")

    images = torch.zeros((1, 8, 8, 3), dtype=torch.uint8)
    boxes = torch.tensor([[0, 0.0, 0.0, 8.0, 8.0]]).repeat(2048, 1)
    monkeypatch.setattr(torch, "empty", no_alloc)
    with pytest.raises(ValueError, match=f"at most {MAX_OUT_BYTES / 2**30:.0f} GiB"):
        crop_resize(images, boxes, MAX_OUT_SIDE)
