"""Property tests: random shapes, boxes (edges, 1-pixel, partly or wholly outside the image)
and sizes, against the float64 pure-PyTorch reference. Also checks the per-pixel formulas
that the CUDA kernel runs (the CPU kernel's `direct` mode) against the same reference, so
the device arithmetic is tested on machines without a GPU."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msgf.ops import crop_resize
from msgf.ops.crop import _check_boxes, _launch_kernel
from msgf.ops.reference import crop_resize_reference


@st.composite
def crop_problems(draw):
    uint8 = draw(st.booleans())
    n = draw(st.integers(1, 3))
    height, width = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    channels = draw(st.sampled_from([1, 3, 4])) if uint8 else draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    if uint8:
        images = torch.randint(0, 256, (n, height, width, channels), dtype=torch.uint8, generator=generator)
    else:
        images = torch.rand((n, channels, height, width), generator=generator) * 4 - 2
    boxes, sizes = [], []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["inside", "edge", "one-pixel", "partly-outside", "outside"]))
        if kind == "one-pixel":
            x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
            box = [x0, y0, x0 + 1, y0 + 1]
        elif kind == "edge":
            box = [0, 0, width, height] if draw(st.booleans()) else [width - 1, height - 1, width, height]
        else:
            spread = {"inside": 0.0, "partly-outside": 0.5, "outside": 3.0}[kind]
            coord = st.floats(-spread, 1 + spread, allow_nan=False)
            xa, xb = sorted([draw(coord) * width, draw(coord) * width])
            ya, yb = sorted([draw(coord) * height, draw(coord) * height])
            box = [xa, ya, max(xb, xa + 0.25), max(yb, ya + 0.25)]
        boxes.append([draw(st.integers(0, n - 1))] + [float(v) for v in box])
        sizes.append((draw(st.integers(1, 24)), draw(st.integers(1, 24))))
    mean = [draw(st.floats(-1, 1)) for _ in range(channels)]
    std = [draw(st.floats(0.1, 2)) for _ in range(channels)]
    return images, torch.tensor(boxes, dtype=torch.float32), sizes, mean, std, draw(st.booleans())


def assert_matches_reference(images, boxes, sizes, patches, index, mean, std, antialias):
    expected = crop_resize_reference(images, boxes, sizes, mean, std, antialias, torch.float64)
    # 1e-4 on [0, 1]-scaled values, in output units after the 1/std of normalisation.
    unit = 1.0 if images.dtype == torch.uint8 else 4.0
    tolerance = 1e-4 * unit / min(std)
    for group, rows in zip(patches, index):
        for patch, row in zip(group, rows.tolist()):
            assert patch.shape[1:] == sizes[row]
            assert (patch.double() - expected[row]).abs().max() <= tolerance, (row, boxes[row])


@settings(max_examples=120, deadline=None)
@given(crop_problems())
def test_kernel_matches_reference(problem):
    images, boxes, sizes, mean, std, antialias = problem
    result = crop_resize(images, boxes, sizes, mean=mean, std=std, antialias=antialias)
    assert_matches_reference(images, boxes, sizes, result.patches, result.index, mean, std, antialias)


@settings(max_examples=60, deadline=None)
@given(crop_problems())
def test_cuda_per_pixel_formulas_match_reference_and_cpu_kernel(problem):
    images, boxes, sizes, mean, std, antialias = problem
    heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
    checked = _check_boxes(images, boxes)
    direct = _launch_kernel(images, checked, heights, widths, mean, std, antialias, torch.float32, direct=True)
    result = crop_resize(images, boxes, sizes, mean=mean, std=std, antialias=antialias)
    assert_matches_reference(images, boxes, sizes, direct, result.index, mean, std, antialias)
    for a, b in zip(direct, result.patches):
        if antialias:  # the CPU filters separably, the device in one 2-D sum: rounding differs
            assert (a - b).abs().max() <= 1e-5 * 4 / min(std)
        else:          # bilinear: the same formulas on both, bit for bit
            assert torch.equal(a, b)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@settings(max_examples=300, deadline=None)
@given(crop_problems(), st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_cuda_kernel_matches_reference(problem, out_dtype):
    images, boxes, sizes, mean, std, antialias = problem
    result = crop_resize(images.cuda(), boxes.cuda(), sizes, mean=mean, std=std, antialias=antialias,
                         out_dtype=out_dtype)
    patches = [p.cpu() for p in result.patches]
    assert all(p.dtype == out_dtype for p in patches)
    if out_dtype == torch.float32:
        assert_matches_reference(images, boxes, sizes, patches, result.index, mean, std, antialias)
        return
    # half precision: the float64 reference rounded once to out_dtype, give or take one unit
    # in the last place of the output (8 bits of mantissa for bfloat16, 11 for float16)
    expected = crop_resize_reference(images, boxes, sizes, mean, std, antialias, torch.float64)
    ulp = 2.0 ** -7 if out_dtype == torch.bfloat16 else 2.0 ** -10
    for group, rows in zip(patches, result.index):
        for patch, row in zip(group, rows.tolist()):
            want = expected[row]
            assert (patch.double() - want).abs().max() <= ulp * want.abs().max() + 1e-4 * 4 / min(std), row
