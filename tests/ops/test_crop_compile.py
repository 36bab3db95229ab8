"""The op is a proper torch.library custom op: opcheck passes and torch.compile traces it."""
import pytest
import torch

from msgf.ops import crop_resize, focus_boxes


def sample_args():
    images = torch.randint(0, 256, (2, 40, 50, 3), dtype=torch.uint8)
    boxes = torch.tensor([[0, 1.0, 2.0, 17.0, 18.0], [1, 3.5, 0.0, 40.0, 33.0], [1, 0.0, 0.0, 16.0, 16.0]])
    return images, boxes


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_opcheck(antialias, out_dtype):
    images, boxes = sample_args()
    torch.library.opcheck(torch.ops.msgf.crop_resize.default,
                          (images, boxes, [16, 8, 16], [16, 12, 16], [0.5, 0.4, 0.3], [0.2, 0.2, 0.2], antialias,
                           out_dtype))
    float_images = images.permute(0, 3, 1, 2).float().contiguous()
    torch.library.opcheck(torch.ops.msgf.crop_resize.default,
                          (float_images, boxes, [16, 8, 16], [16, 12, 16], [0.0] * 3, [1.0] * 3, antialias, out_dtype))


def test_compile_fullgraph():
    images, boxes = sample_args()

    def glance_and_focus(images, boxes):
        patches, _ = crop_resize(images, boxes, [16, 8, 16], mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
        return [p.sum(dim=(1, 2, 3)) for p in patches]

    compiled = torch.compile(glance_and_focus, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(images, boxes), glance_and_focus(images, boxes)):
        assert torch.equal(got, want)


def test_compile_fullgraph_with_focus_boxes():
    images = torch.randint(0, 256, (3, 40, 50, 3), dtype=torch.uint8)
    locs = torch.rand(3, 2)

    def focus(images, locs):
        boxes = focus_boxes(locs, 16, (40, 50))
        return crop_resize(images, boxes, 16).patches[0]

    compiled = torch.compile(focus, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(images, locs), focus(images, locs))


def test_images_that_want_a_gradient_are_told_there_is_none():
    """Eager calls skip the dispatcher, except where autograd needs the op: its backward says
    that no formula exists, instead of a silently missing gradient."""
    images = torch.rand((1, 3, 20, 20), requires_grad=True)
    boxes = torch.tensor([[0, 1.0, 1.0, 10.0, 10.0]])
    (patches,) = crop_resize(images, boxes, 4).patches
    with pytest.raises(RuntimeError, match="no autograd formula"):
        patches.sum().backward()
    with torch.no_grad():
        assert not crop_resize(images, boxes, 4).patches[0].requires_grad
