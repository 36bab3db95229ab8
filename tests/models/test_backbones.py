import pytest
import torch
import torchvision
from torch import nn

from msgf.models.backbones import available_backbones, build_backbone, default_classifier

REQUIRED = ["resnet18", "resnet34", "resnet50", "densenet121", "densenet169", "densenet201", "regnet_y_400mf",
            "regnet_y_800mf", "regnet_y_1_6gf", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
            "efficientnet_b1", "efficientnet_b2", "efficientnet_b3"]
HEADS = {"resnet18": "fc", "densenet121": "classifier", "regnet_y_400mf": "fc", "mobilenet_v3_small": "classifier",
         "efficientnet_b0": "classifier"}


def test_registry_covers_the_required_backbones():
    assert set(REQUIRED) <= set(available_backbones())


@pytest.mark.parametrize("name", sorted(HEADS))
def test_pooled_vector_equals_torchvision_model_without_head(name, tmp_path):
    # Oracle: torchvision's own forward with its head replaced by Identity returns the pooled
    # vector; weights travel through a local state-dict file (with a 7-class head we drop).
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None, num_classes=7).eval()
    path = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), path)
    setattr(reference, HEADS[name], nn.Identity())
    backbone = build_backbone(name, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap, pooled = backbone(x)
        expected = reference(x)
    assert fmap.dim() == 4 and fmap.shape[1] == pooled.shape[1] == backbone.feature_dim
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


def test_weights_of_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "resnet34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="weights file"):
        build_backbone("resnet18", weights=path)
    with pytest.raises(ValueError, match="does not exist"):
        build_backbone("resnet18", weights=tmp_path / "missing.pt")


def test_bad_names():
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("vit_b_16")
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("resnet_not_a_model")
    with pytest.raises(TypeError, match="backbone"):
        build_backbone(18)


def test_default_classifier_follows_the_paper():
    assert [default_classifier(n) for n in ("resnet50", "densenet121", "regnet_y_400mf")] == ["gru"] * 3
    assert [default_classifier(n) for n in ("mobilenet_v3_large", "efficientnet_b2")] == ["fc"] * 2
