"""msgf.ops.crop_resize against independent implementations on real photographs:
torchvision's roi_align (bilinear, half-pixel), F.interpolate (antialiased glance), and
msgf's own pure-PyTorch reference (dense resampling matrices in float64)."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from msgf.ops import crop_resize, focus_boxes, glance
from msgf.ops.reference import crop_resize_reference

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_float_nchw(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N,H,W,C) -> float32 (N,C,H,W) in [0, 1], the roi_align / interpolate input."""
    return images_u8.permute(0, 3, 1, 2).float().div(255).contiguous()


def inside_boxes(height, width, num, generator, integer=False):
    """Random boxes that lie inside a height x width image."""
    x0 = torch.rand(num, generator=generator) * (width - 8)
    y0 = torch.rand(num, generator=generator) * (height - 8)
    x1 = x0 + 4 + torch.rand(num, generator=generator) * (width - x0 - 4)
    y1 = y0 + 4 + torch.rand(num, generator=generator) * (height - y0 - 4)
    boxes = torch.stack([torch.zeros(num), x0, y0, x1, y1], 1)
    return boxes.floor() if integer else boxes


def test_same_size_crops_are_bit_exact_with_roi_align(photo_u8):
    images = to_float_nchw(photo_u8)
    _, _, height, width = images.shape
    generator = torch.Generator().manual_seed(0)
    locs = torch.rand(12, 2, generator=generator)
    for side in (1, 7, 96, 128):
        boxes = focus_boxes(locs, side, (height, width), batch_index=torch.zeros(12))
        ours = crop_resize(images, boxes, side).patches[0]
        assert torch.equal(ours, roi_align(images, boxes, (side, side), 1.0, 1, True))


@pytest.mark.parametrize("side", [24, 64, 200])
def test_resampled_crops_match_roi_align(photo_u8, side):
    """Down- and upscaling boxes inside the image: roi_align(aligned=True, sampling_ratio=1)."""
    images = to_float_nchw(photo_u8)
    boxes = inside_boxes(images.shape[2], images.shape[3], 16, torch.Generator().manual_seed(side))
    ours = crop_resize(images, boxes, side).patches[0]
    expected = roi_align(images, boxes, (side, side), 1.0, 1, True)
    assert (ours - expected).abs().max() < 1e-4


@pytest.mark.parametrize("size", [(96, 96), (37, 80), (700, 650)])
def test_glance_matches_interpolate_antialias(photo_u8, size):
    images = to_float_nchw(photo_u8)
    expected = F.interpolate(images, size, mode="bilinear", antialias=True, align_corners=False)
    assert (glance(images, size) - expected).abs().max() < 1e-4
    # uint8 input: within 1e-4 of the exact filter applied to the same values as floats, and
    # within 1/255 of torch's uint8 path. That path rounds between its passes and uses
    # fixed-point weights, so it can itself sit slightly over 1 LSB from torch's float path;
    # allow that much.
    from_u8 = glance(photo_u8, size)
    assert (from_u8 - expected).abs().max() < 1e-4
    rounded = F.interpolate(photo_u8.permute(0, 3, 1, 2), size, mode="bilinear", antialias=True)
    torch_own_gap = (expected * 255 - rounded.float()).abs().max()
    assert (from_u8 * 255 - rounded.float()).abs().max() <= max(1.0, torch_own_gap) + 1e-3


def test_antialiased_crops_match_reference(photo_u8):
    images = to_float_nchw(photo_u8)
    boxes = inside_boxes(images.shape[2], images.shape[3], 10, torch.Generator().manual_seed(3))
    sizes = [[17, 33], [96, 96], [5, 200], [64, 8], [128, 128], [33, 17], [96, 96], [1, 1], [300, 20], [2, 3]]
    result = crop_resize(images, boxes, sizes, antialias=True, mean=0.5, std=0.25)
    channels = images.shape[1]
    expected = crop_resize_reference(images, boxes, [tuple(s) for s in sizes], [0.5] * channels, [0.25] * channels,
                                     True, torch.float32)
    for patches, rows in zip(result.patches, result.index):
        for patch, row in zip(patches, rows.tolist()):
            assert (patch - expected[row]).abs().max() < 4e-4  # 1e-4 on [0, 1] data, scaled by 1/std


def test_mixed_sizes_in_one_call_equal_one_size_at_a_time(photo_u8):
    generator = torch.Generator().manual_seed(1)
    images = photo_u8.expand(3, -1, -1, -1).contiguous()
    height, width = images.shape[1:3]
    sizes = torch.tensor([96, 128, 160, 96, 160, 128, 96])
    locs = torch.rand(len(sizes), 2, generator=generator)
    boxes = focus_boxes(locs, sizes, (height, width), batch_index=torch.tensor([0, 1, 2, 2, 1, 0, 1]))
    for antialias in (False, True):
        mixed = crop_resize(images, boxes, sizes, mean=MEAN[:images.shape[-1]], std=STD[:images.shape[-1]],
                            antialias=antialias)
        assert [p.shape[-1] for p in mixed.patches] == [96, 128, 160]
        for patches, rows in zip(mixed.patches, mixed.index):
            assert torch.equal(rows, (sizes == patches.shape[-1]).nonzero()[:, 0])
            alone = crop_resize(images, boxes[rows], patches.shape[-1], mean=MEAN[:images.shape[-1]],
                                std=STD[:images.shape[-1]], antialias=antialias)
            assert torch.equal(patches, alone.patches[0])


def test_uint8_and_float_inputs_agree(photo_u8):
    channels = photo_u8.shape[-1]
    mean, std = MEAN[:channels], STD[:channels]
    boxes = inside_boxes(photo_u8.shape[1], photo_u8.shape[2], 8, torch.Generator().manual_seed(2))
    sizes = [40, 96, 96, 13, 40, 200, 64, 64]
    for antialias in (False, True):
        from_u8 = crop_resize(photo_u8, boxes, sizes, mean=mean, std=std, antialias=antialias)
        from_float = crop_resize(to_float_nchw(photo_u8), boxes, sizes, mean=mean, std=std, antialias=antialias)
        for a, b in zip(from_u8.patches, from_float.patches):
            assert (a - b).abs().max() < 1e-5


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_outputs_round_to_nearest_even(photo_u8, out_dtype):
    boxes = inside_boxes(photo_u8.shape[1], photo_u8.shape[2], 6, torch.Generator().manual_seed(4))
    # Extreme std pushes values into float16's subnormal range and past its largest value.
    for std in (0.2, 3e5, 1e-6):
        for antialias in (False, True):
            full = crop_resize(photo_u8, boxes, 48, mean=0.3, std=std, antialias=antialias).patches[0]
            reduced = crop_resize(photo_u8, boxes, 48, mean=0.3, std=std, antialias=antialias,
                                  out_dtype=out_dtype).patches[0]
            assert reduced.dtype == out_dtype
            assert torch.equal(reduced.float(), full.to(out_dtype).float())


def test_float_input_with_many_channels_and_strides():
    """Any channel count for float input, and non-contiguous views read through their strides."""
    generator = torch.Generator().manual_seed(5)
    features = torch.rand(2, 7, 40, 50, generator=generator)
    view = features.transpose(2, 3)  # (2, 7, 50, 40), non-contiguous
    boxes = torch.tensor([[1, 2.5, 3.0, 30.0, 44.0], [0, 0.0, 0.0, 40.0, 50.0]])
    for antialias in (False, True):
        ours = crop_resize(view, boxes, [(9, 21), (50, 40)], antialias=antialias)
        contiguous = crop_resize(view.contiguous(), boxes, [(9, 21), (50, 40)], antialias=antialias)
        for a, b in zip(ours.patches, contiguous.patches):
            assert torch.equal(a, b)
    assert torch.equal(crop_resize(view, boxes[1:], [(50, 40)]).patches[0], view[:1])


def test_reference_fallback_groups_like_the_kernel(photo_u8):
    """CUDA tensors in a build without nvcc take the float32 reference; same layout, same values."""
    from msgf.ops.crop import _reference_grouped

    channels = photo_u8.shape[-1]
    boxes = inside_boxes(photo_u8.shape[1], photo_u8.shape[2], 5, torch.Generator().manual_seed(6))
    sizes = [64, 32, 64, 48, 32]
    for antialias in (False, True):
        kernel = crop_resize(photo_u8, boxes, sizes, mean=MEAN[:channels], std=STD[:channels], antialias=antialias)
        fallback = _reference_grouped(photo_u8, boxes, sizes, sizes, list(MEAN[:channels]), list(STD[:channels]),
                                      antialias, torch.float32)
        assert [p.shape for p in fallback] == [p.shape for p in kernel.patches]
        for a, b in zip(kernel.patches, fallback):
            assert (a - b).abs().max() < 1e-4 / min(STD)
