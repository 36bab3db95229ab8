import os

import pytest
import torch

import msgf
import msgf.checkpoint
import msgf.models.macs
from msgf.engine import EXIT, Thresholds


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = msgf.build_model("mobilenet_v3_small", num_classes=3, glance_size=32, patch_sizes=[32, 48], T=3,
                             class_names=["a", "b", "c"]).eval()
    model.exit_thresholds = [Thresholds([[0.4, 0.6], [0.5, 0.5]], budget=5e6, accuracy=0.7, macs=4.9e6,
                                        sizes=(32, 48))]
    return model


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.pt"
    msgf.save_checkpoint(model, path, epoch=7, metrics={"val": [0.5, 0.6]})
    return model, path


def test_round_trip_rebuilds_the_same_model(saved, monkeypatch):
    model, path = saved
    monkeypatch.setattr(msgf.models.macs, "measure", lambda m: pytest.fail("MACs must come from the file"))
    loaded = msgf.load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    assert loaded.macs_table() == model.macs_table()
    assert [t.to_dict() for t in loaded.exit_thresholds] == [t.to_dict() for t in model.exit_thresholds]
    images = torch.randint(0, 256, (2, 60, 60, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded.glance(images).logits, model.glance(images).logits)
    assert msgf.read_checkpoint(path)["extra"] == {"epoch": 7, "metrics": {"val": [0.5, 0.6]}}


def test_loads_with_plain_weights_only_torch_load(saved):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == msgf.checkpoint.FORMAT_VERSION
    assert payload["config"]["backbone"] == "mobilenet_v3_small"


def rewrite(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_thresholds_saved_before_the_exit_rule_changed_load_to_the_same_decisions(saved):
    model, path = saved
    # Before issue 29 a set had no "rule" and meant exit at c > eta; it loads converted.
    def as_written_before(payload):
        for entry in payload["thresholds"]:
            del entry["rule"]
        payload["digest"] = msgf.checkpoint._digest(payload)  # as that msgf signed it

    rewrite(path, as_written_before)
    (loaded,) = msgf.load_checkpoint(path).exit_thresholds
    (written,) = model.exit_thresholds
    conf = torch.tensor([0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7], dtype=torch.float32)
    # Step 1 (0.4, 0.6): no float32 equals either, so both rules agree.
    assert loaded.next_size_index(1, conf).tolist() == written.next_size_index(1, conf).tolist() == \
        [0, 1, 1, 1, 1, EXIT, EXIT]
    # Step 2 (0.5, 0.5): c = 0.5 ties; the stored set keeps it running, as it did, a new one lets it leave.
    assert loaded.next_size_index(2, conf).tolist() == [0, 0, 0, 0, EXIT, EXIT, EXIT]
    assert written.next_size_index(2, conf).tolist() == [0, 0, 0, EXIT, EXIT, EXIT, EXIT]


def test_other_format_version_is_refused(saved):
    _, path = saved
    rewrite(path, lambda p: p.update(format_version=99))
    with pytest.raises(msgf.CheckpointError, match="format version 99"):
        msgf.load_checkpoint(path)


@pytest.mark.parametrize("change", [
    lambda p: p["state_dict"]["aux_heads.0.bias"].add_(1e-3),
    lambda p: p["config"].update(num_classes=4),
    lambda p: p["thresholds"][0]["eta"][0].reverse(),
], ids=["weights", "config", "thresholds"])
def test_tampered_content_is_detected(saved, change):
    _, path = saved
    rewrite(path, change)
    with pytest.raises(msgf.CheckpointError, match="modified"):
        msgf.load_checkpoint(path)


def test_damaged_or_foreign_files_get_a_clear_error(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(msgf.CheckpointError, match="not a readable msgf checkpoint"):
        msgf.load_checkpoint(path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(msgf.CheckpointError, match="not an msgf checkpoint"):
        msgf.load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        msgf.load_checkpoint(tmp_path / "missing.pt")


def test_write_is_atomic(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        msgf.save_checkpoint(model, path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_extra_must_be_plain(saved, tmp_path):
    model, _ = saved
    with pytest.raises(TypeError, match=r"extra\['when'\]"):
        msgf.save_checkpoint(model, tmp_path / "x.pt", when=object())
    with pytest.raises(TypeError, match="model"):
        msgf.save_checkpoint(torch.nn.Linear(1, 1), tmp_path / "x.pt")


def test_update_thresholds_replaces_the_same_budget(saved):
    _, path = saved
    msgf.checkpoint.update_thresholds(path, [Thresholds([[0.1, 0.2], [0.3, 0.4]], budget=5e6),
                                             Thresholds([[0.9, 0.9], [0.9, 0.9]], budget=8e6)])
    loaded = msgf.load_checkpoint(path)
    assert sorted((t.budget, t.eta[0, 0]) for t in loaded.exit_thresholds) == [(5e6, 0.1), (8e6, 0.9)]
    with pytest.raises(ValueError, match="model needs"):
        msgf.checkpoint.update_thresholds(path, Thresholds([[0.5]], budget=1e6))
