"""The CUDA kernel on a GPU, against the CPU kernel and the float64 reference.

Skipped without a CUDA device. The per-pixel arithmetic is also covered on CPU-only machines
(test_crop_properties: the CPU kernel's `direct` mode runs the device formulas); what only a
GPU can show is checked here: launch geometry over many boxes and large images, strided and
offset inputs, every output dtype, streams, and the op inside torch.compile."""
import pytest
import torch

from msgf import _C
from msgf.ops import crop_resize, focus_boxes, glance
from msgf.ops.reference import crop_resize_reference

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.skipif(not _C.has_cuda, reason="extension built without the CUDA kernel")]

OUT_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def random_boxes(n: int, count: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Boxes of 1 px to the whole image, a fifth of them partly outside it."""
    side = torch.randint(1, min(height, width) + 1, (count,), generator=generator).float()
    x0 = torch.rand(count, generator=generator) * (width - side + 0.6 * side) - 0.3 * side
    y0 = torch.rand(count, generator=generator) * (height - side + 0.6 * side) - 0.3 * side
    stretch = 0.5 + torch.rand(count, generator=generator)
    batch = torch.randint(0, n, (count,), generator=generator).float()
    return torch.stack([batch, x0, y0, x0 + side * stretch, y0 + side], dim=1)


def assert_patches_equal(cpu, gpu, antialias: bool, out_dtype: torch.dtype, std: float):
    assert [p.shape for p in cpu.patches] == [p.shape for p in gpu.patches]
    for a, b in zip(cpu.patches, gpu.patches):
        assert b.is_cuda and b.dtype == out_dtype
        if not antialias:  # the same formulas, no FMA contraction on either side: bit for bit
            assert torch.equal(a, b.cpu())
        else:              # separable (CPU) against one 2-D sum (GPU): float rounding apart
            tolerance = 1e-5 / std if out_dtype == torch.float32 else 2 ** -7 * (a.float().abs().max() + 1)
            assert (a.float() - b.cpu().float()).abs().max() <= tolerance


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("out_dtype", OUT_DTYPES)
def test_many_boxes_on_large_uint8_images_match_the_cpu_kernel(antialias, out_dtype):
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 960, 1280, 3), dtype=torch.uint8, generator=generator)
    boxes = random_boxes(6, 500, 960, 1280, generator)
    sizes = torch.tensor([32, 64, 96, 128, 160, 224])[torch.randint(0, 6, (500,), generator=generator)].tolist()
    kwargs = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], antialias=antialias, out_dtype=out_dtype)
    cpu = crop_resize(images, boxes, sizes, **kwargs)
    gpu = crop_resize(images.cuda(), boxes.cuda(), sizes, **kwargs)
    assert [i.tolist() for i in cpu.index] == [i.tolist() for i in gpu.index]
    assert_patches_equal(cpu, gpu, antialias, out_dtype, std=0.224)


@pytest.mark.parametrize("antialias", [False, True])
def test_float_inputs_strided_and_offset_match_the_reference(antialias):
    generator = torch.Generator().manual_seed(2)
    base = torch.rand((5, 4, 90, 130), generator=generator) * 4 - 2
    # every view the kernel must read through its strides: a batch slice with a storage
    # offset, a channel subset, a channels-last layout and a spatial step
    views = [base[1:4], base[:, 1:], base.contiguous(memory_format=torch.channels_last), base[:, :, ::2, ::3]]
    for view in views:
        n, c, h, w = view.shape
        boxes = random_boxes(n, 40, h, w, generator)
        expected = crop_resize_reference(view, boxes, [(24, 20)] * 40, [0.1] * c, [0.5] * c, antialias, torch.float64)
        got = crop_resize(view.cuda(), boxes.cuda(), [(24, 20)] * 40, mean=0.1, std=0.5, antialias=antialias)
        patches = got.patches[0].cpu().double()
        for row in range(40):
            assert (patches[row] - expected[row]).abs().max() <= 1e-4 * 4 / 0.5, (view.stride(), row)


def test_uint8_views_with_strides_and_offsets_match_the_contiguous_input():
    generator = torch.Generator().manual_seed(3)
    base = torch.randint(0, 256, (4, 120, 160, 4), dtype=torch.uint8, generator=generator)
    boxes = random_boxes(2, 30, 60, 80, generator)
    for view in (base[2:, ::2, ::2, :3], base[1:3, 30:90, 40:120, 1:]):
        want = crop_resize(view.contiguous().cuda(), boxes.cuda(), 32, antialias=True)
        got = crop_resize(view.cuda(), boxes.cuda(), 32, antialias=True)
        assert torch.equal(want.patches[0], got.patches[0])


def test_glance_and_focus_boxes_on_the_device_match_the_host():
    generator = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (8, 480, 640, 3), dtype=torch.uint8, generator=generator)
    for out_dtype in OUT_DTYPES:
        cpu = glance(images, (96, 128), mean=0.5, std=0.5, out_dtype=out_dtype)
        gpu = glance(images.cuda(), (96, 128), mean=0.5, std=0.5, out_dtype=out_dtype)
        tolerance = 2e-5 if out_dtype == torch.float32 else 2 ** -7 * 2
        assert (cpu.float() - gpu.cpu().float()).abs().max() <= tolerance
    locs = torch.rand(8, 2, generator=generator)
    assert torch.equal(focus_boxes(locs, 96, (480, 640)), focus_boxes(locs.cuda(), 96, (480, 640)).cpu())


def test_zero_boxes_and_empty_batches_on_the_device():
    images = torch.zeros((2, 10, 10, 3), dtype=torch.uint8, device="cuda")
    assert crop_resize(images, torch.zeros((0, 5), device="cuda"), 8).patches == []
    assert glance(images[:0], 8).shape == (0, 3, 8, 8)


def test_runs_on_the_current_stream():
    """The launch must follow torch's current stream: work queued before it on a side stream
    (here, the writes that make the input) is visible to it without a device-wide sync."""
    generator = torch.Generator().manual_seed(5)
    host = torch.randint(0, 256, (4, 200, 300, 3), dtype=torch.uint8, generator=generator)
    boxes = random_boxes(4, 64, 200, 300, generator)
    want = crop_resize(host, boxes, 48).patches[0]
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        images = torch.zeros_like(host, device="cuda")
        for _ in range(20):  # keep the stream busy so a launch on another stream would race
            images.add_(1)
        images.copy_(host.cuda(non_blocking=True))
        got = crop_resize(images, boxes.cuda(), 48).patches[0]
    side.synchronize()
    assert torch.equal(got.cpu(), want)


def test_torch_compile_on_the_device():
    generator = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (3, 64, 80, 3), dtype=torch.uint8, generator=generator).cuda()
    locs = torch.rand(3, 2, generator=generator).cuda()

    def focus(images, locs):
        return crop_resize(images, focus_boxes(locs, 32, (64, 80)), 32, mean=0.5, std=0.25).patches[0]

    compiled = torch.compile(focus, fullgraph=True)
    assert torch.equal(compiled(images, locs), focus(images, locs))


@pytest.mark.parametrize("antialias", [False, True])
def test_opcheck_on_the_device(antialias):
    images = torch.randint(0, 256, (2, 40, 50, 3), dtype=torch.uint8, device="cuda")
    boxes = torch.tensor([[0, 1.0, 2.0, 17.0, 18.0], [1, 3.5, 0.0, 40.0, 33.0]], device="cuda")
    torch.library.opcheck(torch.ops.msgf.crop_resize.default,
                          (images, boxes, [16, 8], [16, 12], [0.5] * 3, [0.2] * 3, antialias, torch.float32))
