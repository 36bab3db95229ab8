"""Static baselines: MACs counted as the project counts them, training resumable and cached."""
import pytest
import torch
from torch import nn

from msgf.reproduce import static
from msgf.reproduce.plan import StaticRun
from msgf.train import presets


@pytest.fixture(scope="module")
def config():
    return presets.preset("smoke", **{"data.batch_size": 8, "data.eval_batch_size": 8})


class Stop(Exception):
    pass


def test_count_macs_is_flops_over_two_of_every_layer():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 8, 5))
    conv = 6 * 8 * 4 * 3 * 3 * 3  # outputs x (inputs per output)
    assert static.count_macs(net, (6, 8)) == conv + 4 * 6 * 8 * 5


def test_an_interrupted_baseline_resumes_to_the_same_weights_and_is_then_reused(config, tmp_path, fake_splits):
    run, splits = StaticRun((24, 32), 2), fake_splits()
    whole = static.ensure_static(run, config, splits, tmp_path / "a", progress=False, log=lambda m: None)

    def stop_after_first_epoch(message):
        if "epoch 1/2" in message:
            raise Stop

    with pytest.raises(Stop):
        static.ensure_static(run, config, splits, tmp_path / "b", progress=False, log=stop_after_first_epoch)
    assert (tmp_path / "b" / run.name / "state.pt").exists() and not (tmp_path / "b" / run.name / "done.json").exists()
    lines = []
    resumed = static.ensure_static(run, config, splits, tmp_path / "b", progress=False, log=lines.append)
    assert lines[0] == f"{run.name}: resuming at epoch 2/2"
    a = static.load(whole, tmp_path / "a", config.backbone, 4).state_dict()
    b = static.load(resumed, tmp_path / "b", config.backbone, 4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert [h["val_accuracy"] for h in resumed["history"]] == [h["val_accuracy"] for h in whole["history"]]
    assert whole["macs"] == static.count_macs(static.build(config.backbone, 4), (24, 32))

    lines.clear()
    again = static.ensure_static(run, config, splits, tmp_path / "b", progress=False, log=lines.append)
    assert again["reused"] and "reused" in lines[0] and again["test_accuracy"] == whole["test_accuracy"]
    scores = static.test_scores(whole, tmp_path / "a", config.backbone, 4, splits, 3)  # batches of 3, 3 and 2
    assert len(scores) == 8 and scores.mean() == pytest.approx(whole["test_accuracy"])


def test_a_static_run_needs_an_epoch(config, tmp_path, fake_splits):
    with pytest.raises(ValueError, match="epochs"):
        static.ensure_static(StaticRun((24, 32), 0), config, fake_splits(), tmp_path, progress=False)


def test_large_batches_are_split_into_chunks_with_the_same_step(monkeypatch):
    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))

    images = torch.randint(0, 256, (6, 12, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    whole, chunked = net(), net()
    assert static.chunk_size(6, (12, 16)) == 6
    assert static.chunk_size(32, (960, 1280)) == 8 and static.chunk_size(32, (480, 640)) == 32
    loss_whole = static._step(whole, torch.optim.SGD(whole.parameters(), lr=0.5), images, labels, (12, 16))
    monkeypatch.setattr(static, "MAX_CHUNK_PIXELS", 4 * 12 * 16)
    assert static.chunk_size(6, (12, 16)) == 4  # chunks of 4 and 2
    loss_chunked = static._step(chunked, torch.optim.SGD(chunked.parameters(), lr=0.5), images, labels, (12, 16))
    assert loss_chunked == pytest.approx(loss_whole, rel=1e-5)
    for a, b in zip(whole.parameters(), chunked.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
