"""MACs of every step: the backbone part against an independent FlopCounterMode count of the
bare torchvision model, the rest against the layer formulas written out here."""
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import msgf

HEAD = {"resnet": "fc", "densenet": "classifier", "regnet": "fc", "mobilenet": "classifier",
        "efficientnet": "classifier"}
FAST = ["resnet18", "densenet121", "regnet_y_400mf", "mobilenet_v3_small", "efficientnet_b0"]
ALL = ["resnet18", "resnet34", "resnet50", "densenet121", "densenet169", "densenet201", "regnet_y_400mf",
       "regnet_y_800mf", "regnet_y_1_6gf", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
       "efficientnet_b1", "efficientnet_b2", "efficientnet_b3"]


def bare_torchvision(name: str, size: int) -> tuple[int, int, int]:
    """(MACs, channels D, map side) of the torchvision model without its head at size x size."""
    model = torchvision.models.get_model(name, weights=None)
    setattr(model, HEAD[name.split("_")[0].rstrip("0123456789")], nn.Identity())
    model = model.to("meta").eval()
    seen = {}
    # The pre-pooling map: input of avgpool, or for DenseNet the output of `features`.
    pool = getattr(model, "avgpool", None)
    if pool is not None:
        pool.register_forward_pre_hook(lambda m, args: seen.update(map=args[0].shape))
    else:
        model.features.register_forward_hook(lambda m, args, out: seen.update(map=out.shape))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size, device="meta"))
    _, channels, side, _ = seen["map"]
    return counter.get_total_flops() // 2, channels, side


def gru_macs(inputs: int, hidden: int) -> int:
    # Three gates, each an input and a hidden matrix-vector product.
    return 3 * hidden * inputs + 3 * hidden * hidden


def expected_steps(name, classes, glance, sizes, T, classifier, hidden=1024, p_channels=32, p_hidden=256):
    encoder = {s: bare_torchvision(name, s) for s in {glance, *sizes}}
    dim = encoder[glance][1]
    side = max(e[2] for e in encoder.values())  # policy maps are upsampled to the largest
    K = len(sizes)

    def classifier_macs(t):
        if classifier == "gru":
            return gru_macs(dim, hidden) + hidden * classes
        if classifier == "max":  # the glance head; then one head over [glance, max of the focus features]
            return (1 if t == 1 else 2) * dim * classes
        return t * dim * classes  # head t reads the concatenated features of steps 1..t

    policy = (side * side * dim * p_channels  # 1x1 conv on the S x S map
              + gru_macs(p_channels * side * side + (K + 1) + K, p_hidden)  # + one-hots of last/next size
              + p_hidden * 2 + p_hidden)  # location mean head and value head
    steps = [{"glance": {"encoder": encoder[glance][0], "classifier": classifier_macs(1), "policy": 0}}]
    for t in range(2, T + 1):
        steps.append({s: {"encoder": encoder[s][0], "classifier": classifier_macs(t), "policy": policy}
                      for s in sizes})
    return steps


def check(name, classifier=None):
    model = msgf.build_model(name, num_classes=7, glance_size=32, patch_sizes=[32, 64], T=3, classifier=classifier)
    kind = model.config.classifier
    assert model.macs_per_step() == expected_steps(name, 7, 32, [32, 64], 3, kind)
    table = model.macs_table()
    assert set(table) == {"glance", 32, 64}
    assert table["glance"] == model.step_macs(1) == sum(model.macs_breakdown(1).values())
    return model


@pytest.mark.parametrize("name", FAST)
def test_step_macs_match_torchvision_count_plus_hand_counted_heads(name):
    check(name)


def test_step_macs_of_the_max_pooling_classifier():
    check("mobilenet_v3_small", "max")


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("classifier", ["gru", "fc", "max"])
def test_step_macs_every_required_backbone(name, classifier):
    check(name, classifier)


def test_path_cost_is_the_sum_of_its_steps(resnet_model):
    model = msgf.build_model("mobilenet_v3_small", num_classes=7, glance_size=32, patch_sizes=[32, 64], T=3)
    assert model.config.classifier == "fc"
    assert model.step_macs(3, 64) - model.step_macs(2, 64) == 576 * 7  # the cascade head reads one more feature
    assert model.path_macs([64, 32]) == model.step_macs(1) + model.step_macs(2, 64) + model.step_macs(3, 32)
    table = resnet_model.macs_table()  # GRU classifier: a focus step costs the same at every t
    assert resnet_model.path_macs([48, 32]) == table["glance"] + table[48] + table[32]


def test_resnet50_matches_published_reference_macs():
    # notes.md: ResNet-50 without fc at 96/128/160/192 px is about 0.75/1.33/2.09/3.00 GMACs,
    # its GRU classifier (1000 classes) about 10 M.
    model = msgf.build_model("resnet50", num_classes=1000, glance_size=96, patch_sizes=[96, 128, 160, 192], T=2)
    for size, ref in zip([96, 128, 160, 192], [0.75e9, 1.33e9, 2.09e9, 3.00e9]):
        assert model.macs_breakdown(2, size)["encoder"] == pytest.approx(ref, rel=0.02)
    assert model.macs_breakdown(1)["classifier"] == pytest.approx(10e6, rel=0.1)


def test_measuring_leaves_the_model_untouched(resnet_model):
    model = msgf.build_model("resnet18", num_classes=5, glance_size=32, patch_sizes=[32, 48], T=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.macs_table()
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in before)


def test_bad_step_arguments(resnet_model):
    with pytest.raises(ValueError, match="step"):
        resnet_model.step_macs(4, 32)
    with pytest.raises(ValueError, match="size"):
        resnet_model.step_macs(2, 40)
