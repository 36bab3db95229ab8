"""The inference copy (BatchNorm folded, channels-last) against the model as trained, and the
glance paths that prediction takes (chunks of glances, lists of images of any size)."""
import pytest
import torch
from torch import nn

import msgf
import msgf.models.gfnet as gfnet
import msgf.models.inference as inference
from msgf.engine import anytime
from msgf.models import build_backbone
from msgf.models.inference import fold_batchnorm, inference_copy


def _with_running_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, as training leaves them (fresh ones are nearly identity)."""
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def trained_like():
    torch.manual_seed(0)
    model = msgf.build_model("resnet18", num_classes=5, glance_size=32, patch_sizes=[32, 48], T=3)
    return _with_running_statistics(model)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_lite0"])
def test_folding_keeps_each_encoders_outputs(name):
    """Oracle: the same encoder with its BatchNorm layers as they were."""
    torch.manual_seed(0)
    encoder = _with_running_statistics(build_backbone(name))
    folded = _with_running_statistics(build_backbone(name))
    folded.load_state_dict(encoder.state_dict())
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())
    assert fold_batchnorm(folded) == norms  # every BatchNorm of these follows its convolution
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        for want, got in zip(encoder(x), folded(x)):
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_a_copy_decides_as_the_model_and_leaves_it_alone(trained_like):
    images = torch.randint(0, 256, (4, 70, 90, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    fast = inference_copy(trained_like)
    assert any(isinstance(m, nn.BatchNorm2d) for m in trained_like.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    conv = next(m for m in fast.local_encoder.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    want, got = anytime(trained_like, images, 48), anytime(fast, images, 48)
    assert torch.equal(got.pred, want.pred)
    assert torch.allclose(got.conf, want.conf, atol=1e-5)
    assert torch.allclose(got.locs.nan_to_num(), want.locs.nan_to_num(), atol=1e-5)


def test_a_copy_cannot_be_saved_and_a_training_model_cannot_be_copied(trained_like, tmp_path):
    with pytest.raises(ValueError, match="inference copy"):
        msgf.save_checkpoint(inference_copy(trained_like), tmp_path / "fast.ckpt")
    assert not (tmp_path / "fast.ckpt").exists()
    trained_like.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            inference_copy(trained_like)
    finally:
        trained_like.eval()


class _NormBeforeConv(nn.Module):
    """Registers conv then norm, but runs the norm first: registration order is not run order."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.conv(self.norm(x))


def test_a_fold_that_changes_the_outputs_is_refused(trained_like, monkeypatch):
    odd = _with_running_statistics(_NormBeforeConv())
    x = torch.randn(2, 4, 8, 8)
    with torch.inference_mode():
        want = odd(x)
        assert fold_batchnorm(odd) == 1
        assert (odd(x) - want).abs().max() > 0.1  # the fold that the probe check exists to catch

    def misfold(module):  # a fold that gets the arithmetic wrong, as a misplaced one would
        with torch.no_grad():
            next(m for m in module.modules() if isinstance(m, nn.Conv2d)).weight.mul_(2.0)
        return 1

    monkeypatch.setattr(inference, "fold_batchnorm", misfold)
    with pytest.warns(UserWarning, match="runs unfolded"):
        fast = inference_copy(trained_like)
    assert any(isinstance(m, nn.BatchNorm2d) for m in fast.global_encoder.modules())
    images = torch.randint(0, 256, (2, 40, 50, 3), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.allclose(fast.glance(images).logits, trained_like.glance(images).logits, atol=1e-5)


def test_glances_in_chunks_and_as_a_list_match_the_whole_batch(trained_like, monkeypatch):
    gen = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (5, 70, 90, 3), dtype=torch.uint8, generator=gen)
    with torch.inference_mode():
        monkeypatch.setattr(gfnet, "CPU_GLANCE_CHUNK", 64)
        whole = trained_like.glance(images)
        monkeypatch.setattr(gfnet, "CPU_GLANCE_CHUNK", 2)
        chunked = trained_like.glance(images)
        listed = trained_like.glance(list(images))
    # other batch shapes may round matrix products differently in the last bit
    assert torch.allclose(chunked.logits, whole.logits, atol=1e-5)
    assert torch.equal(listed.logits, chunked.logits)  # the same crops, in the same chunks
    assert torch.equal(listed.policy_hidden, chunked.policy_hidden)  # the image sizes reach pi
    with pytest.raises(TypeError, match="list of uint8"):
        trained_like.glance([images[0].float()])
    with pytest.raises(TypeError, match="list of uint8"):
        trained_like.glance([])
