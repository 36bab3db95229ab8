"""The pooled static baseline: its pooling against the GFNet's own heads (the mean and max
limits), its MACs against FlopCounterMode on the encoder, and resumable fine-tuning."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from msgf import build_model
from msgf.checkpoint import save_checkpoint
from msgf.reproduce import pooled, static
from msgf.reproduce.plan import StaticRun
from msgf.train import presets

SIZE = (64, 96)  # a 2x3 map at stride 32


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_torch_thread):
    """See tests/conftest.py: single_torch_thread."""


@pytest.fixture
def workdir(tmp_path):
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 4, 32, (32,), 3).eval()
    with torch.no_grad():  # BatchNorm statistics of real inputs, so that f_L's features depend on them
        model.local_encoder.train()
        for module in model.local_encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a plain average over the batches below
        for _ in range(4):
            model.local_encoder(torch.randn((8, 3, *SIZE)))
        model.aux_heads[1].weight.mul_(10)  # class scores of a few units
        model.eval()
    (tmp_path / "ms").mkdir()
    save_checkpoint(model, tmp_path / "ms" / "stage0.ckpt")
    return tmp_path


@pytest.fixture(scope="module")
def config():
    return presets.preset("smoke", **{"data.batch_size": 8, "data.eval_batch_size": 8})


def _inputs(n=3):
    return torch.randn((n, 3, *SIZE), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_small_sharpness_is_fc2_on_the_pooled_vector_and_large_sharpness_the_best_cell(workdir):
    from msgf.checkpoint import load_checkpoint

    # in float64, where (logsumexp(r z) - log n) / r keeps its digits at small r
    gfnet = load_checkpoint(workdir / "ms" / "stage0.ckpt").double()
    model = pooled.build(workdir, SIZE).double()
    model.head.load_state_dict(gfnet.aux_heads[1].state_dict())
    x = _inputs().double()
    mean_scores = gfnet.aux_heads[1](gfnet.local_encoder(x)[1])
    assert mean_scores.abs().max() > 0.5 and (mean_scores[0] - mean_scores[1]).abs().max() > 0.05
    model.log_sharpness.fill_(math.log(1e-8))
    # the mean of a linear head over the cells is the head on the mean: FC_2 on f_L's vector
    torch.testing.assert_close(model.forward_normalised(x), gfnet.aux_heads[1](gfnet.local_encoder(x)[1]),
                               rtol=0, atol=1e-6)
    model.log_sharpness.fill_(math.log(1e6))
    head = gfnet.aux_heads[1]
    last = gfnet.local_encoder.trunk(x)
    cells = F.conv2d(last, head.weight[:, :, None, None], head.bias)  # (N, K, 2, 3)
    assert cells.shape[-2:] == (2, 3)
    torch.testing.assert_close(model.forward_normalised(x), cells.flatten(2).amax(2), rtol=0, atol=1e-5)


def test_uint8_scenes_are_resized_and_normalised_as_the_glance_is(workdir):
    from msgf import ops

    model = pooled.build(workdir, SIZE)
    images = torch.randint(0, 256, (2, 120, 160, 3), dtype=torch.uint8)
    x = ops.glance(images, SIZE, mean=model.mean, std=model.std)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model.forward_normalised(x))


def test_macs_are_the_encoder_at_the_input_size_plus_the_head_at_every_cell(workdir):
    model = pooled.build(workdir, SIZE)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.encoder(torch.zeros((1, 3, *SIZE)))
    head = model.head
    expected = counter.get_total_flops() // 2 + 2 * 3 * head.in_features * head.out_features
    assert static.count_macs(model, SIZE, method="forward_normalised") == expected


class Stop(Exception):
    pass


def test_fine_tuning_resumes_to_the_same_head_and_is_then_reused(workdir, config, fake_splits, tmp_path):
    run, splits = StaticRun(SIZE, 3, kind="pooled", train_samples=12), fake_splits((96, 128))
    other = tmp_path / "other"
    other.mkdir()
    (other / "ms").symlink_to(workdir / "ms")
    whole = static.ensure_static(run, config, splits, workdir, progress=False, log=lambda m: None)
    assert whole["train_samples"] == 12 and whole["kind"] == "pooled" and len(whole["history"]) == 4

    def stop_after_first_epoch(message):
        if "epoch 1/3" in message:
            raise Stop

    with pytest.raises(Stop):
        static.ensure_static(run, config, splits, other, progress=False, log=stop_after_first_epoch)
    assert (other / run.name / "state.pt").exists() and not (other / run.name / "done.json").exists()
    lines = []
    resumed = static.ensure_static(run, config, splits, other, progress=False, log=lines.append)
    assert f"{run.name}: resuming at epoch 2/3" in lines
    scores = lambda history: [(h["epoch"], h["loss"], h["val_accuracy"]) for h in history]  # noqa: E731
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert scores(resumed["history"]) == scores(whole["history"])
    a = static.load(whole, workdir, config.backbone, 4).state_dict()
    b = static.load(resumed, other, config.backbone, 4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = static.ensure_static(run, config, splits, other, progress=False, log=lines.append)
    assert again["reused"] and again["test_accuracy"] == whole["test_accuracy"]

    # the paired claims' per-scene scores come from the cached test maps; the model, run on the
    # scenes themselves, must agree with them scene by scene
    scores = static.test_scores(whole, workdir, config.backbone, 4, splits, 4)
    model = static.load(whole, workdir, config.backbone, 4)
    test_set = splits.evaluation("test")
    with torch.no_grad():
        direct = [int(model(torch.as_tensor(item["image"])[None]).argmax(1)) == item["label"] for item in test_set]
    assert scores.tolist() == [float(r) for r in direct] and scores.mean() == pytest.approx(whole["test_accuracy"])
    # an accuracy recorded in float32 (as a run of an earlier version did) is the same count
    rounded = float(torch.tensor(whole["test_accuracy"], dtype=torch.float32))
    assert static.test_scores({**whole, "test_accuracy": rounded}, workdir, config.backbone, 4, splits, 4).tolist() == \
        scores.tolist()
    with pytest.raises(ValueError, match="recorded"):
        static.test_scores({**whole, "test_accuracy": whole["test_accuracy"] + 0.125}, workdir, config.backbone, 4,
                           splits, 4)


def test_the_source_checkpoint_must_exist(tmp_path, config, fake_splits):
    with pytest.raises(ValueError, match="stage0.ckpt"):
        static.ensure_static(StaticRun(SIZE, 1, kind="pooled"), config, fake_splits(), tmp_path, progress=False)


def test_a_static_run_names_its_kind():
    with pytest.raises(ValueError, match="kind"):
        StaticRun(SIZE, 1, kind="average")
