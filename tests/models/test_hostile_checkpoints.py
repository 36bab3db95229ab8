"""Checkpoints and threshold files from someone else: nothing runs, every defect is named.

The digest catches accidental damage; these files are crafted with a valid digest (as an
attacker, or an older or newer msgf, would write them), so the loader's own checks are what
is tested. A pickle payload must run nothing: the proof is a file its __reduce__ would
have created."""
import errno
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import msgf
from msgf.checkpoint import FORMAT_VERSION, CheckpointError, _digest, update_thresholds
from msgf.engine import Thresholds


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return msgf.build_model("resnet18", num_classes=3, glance_size=32, patch_sizes=[32, 48], T=3).eval()


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.ckpt"
    msgf.save_checkpoint(model, path)
    return path


def rewrite(path, change) -> None:
    """Apply `change` to the payload and re-sign it, so the digest check passes."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    payload["digest"] = _digest(payload)
    torch.save(payload, path)


class _RunsACommand:
    """Unpickling this would run `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top level", "inside the state dict", "as the config"])
def test_a_pickle_payload_loads_nothing_and_runs_nothing(saved, tmp_path, where):
    marker = tmp_path / "pwned"
    payload = torch.load(saved, weights_only=True)
    evil = _RunsACommand(marker)
    if where == "top level":
        payload = evil
    elif where == "inside the state dict":
        payload["state_dict"]["aux_heads.0.bias"] = evil
    else:
        payload["config"] = evil
    torch.save(payload, saved)  # plain pickle protocol, as torch.save writes it
    for load in (msgf.load_checkpoint, msgf.read_checkpoint, lambda p: msgf.Predictor(p, thresholds=None)):
        with pytest.raises(CheckpointError, match="not a readable msgf checkpoint"):
            load(saved)
    assert not marker.exists()
    # The CLI refuses it too, in a fresh process, and the command still has not run.
    result = subprocess.run([sys.executable, "-m", "msgf", "infer", str(saved), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "not a readable msgf checkpoint" in result.stderr + result.stdout
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda p: p["state_dict"].pop("aux_heads.0.bias"), "aux_heads.0.bias"),
    (lambda p: p["state_dict"].update({"aux_heads.0.bias": torch.zeros(7)}), "aux_heads.0.bias"),
    (lambda p: p["state_dict"].update({"not.a.parameter": torch.zeros(1)}), "not.a.parameter"),
    (lambda p: p["config"].pop("patch_sizes"), "patch_sizes"),
    (lambda p: p["config"].update(T="three"), "T"),
    (lambda p: p.pop("macs_per_step"), "macs_per_step"),
    (lambda p: p.update(thresholds=[{"eta": [[math.nan, 0.5], [0.5, 0.5]], "budget": 1e6}]), "finite|NaN"),
    (lambda p: p.update(thresholds=[{"eta": [[0.5], [0.5]], "budget": 1e6}]), "model needs|shape"),
], ids=["missing tensor", "wrong shape", "unexpected tensor", "missing config key", "bad config value",
        "missing MACs table", "NaN threshold", "thresholds of another shape"])
def test_a_signed_but_inconsistent_checkpoint_names_what_is_wrong(saved, change, message):
    rewrite(saved, change)
    with pytest.raises(CheckpointError, match=message):
        msgf.load_checkpoint(saved)


def test_another_version_and_a_truncated_file_are_named(saved):
    rewrite(saved, lambda p: p.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        msgf.load_checkpoint(saved)
    for keep in (0, 10, 1000):
        saved.write_bytes(saved.read_bytes()[:keep])
        with pytest.raises(CheckpointError, match=str(saved.name)):
            msgf.load_checkpoint(saved)


# ---------------------------------------------------------------- threshold files

def _write(path, values) -> str:
    # json.dumps writes NaN and Infinity (not JSON, but what Python and numpy produce)
    path.write_text(json.dumps(values))
    return str(path)


@pytest.mark.parametrize("eta, message", [
    ([[math.nan, 0.5], [0.5, 0.5]], "NaN|finite"),
    ([[0.5, 0.5]], "model needs"),
    ([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], "model needs"),
    ([0.5, 0.5], "eta|shape|2-D|rows"),
    ([["a", 0.5], [0.5, 0.5]], "eta|number|float"),
    ([], "eta|shape|empty|rows|model needs"),
], ids=["NaN", "too few steps", "too many sizes", "flat", "not numbers", "empty"])
def test_bad_threshold_files_give_value_errors(model, tmp_path, eta, message):
    path = _write(tmp_path / "thresholds.json", {"eta": eta, "budget": 1e6})
    with pytest.raises(ValueError, match=message):
        msgf.Predictor(model, thresholds=path)


def test_infinite_thresholds_are_allowed_but_infinite_budgets_are_not(model, tmp_path):
    # -inf / inf thresholds mean "always exit" / "never exit" (threshold_search writes them)
    msgf.Predictor(model, thresholds=_write(tmp_path / "ok.json", {"eta": [["-inf", "inf"], [0.5, 0.5]]}))
    for budget in (math.inf, math.nan, -1.0):
        with pytest.raises(ValueError, match="budget"):
            Thresholds.from_dict({"eta": [[0.5, 0.5], [0.5, 0.5]], "budget": budget})


def test_thresholds_for_another_model_are_refused(saved):
    other = Thresholds(np.full((2, 2), 0.5), budget=1e6, sizes=(64, 96))  # not this model's patch sizes
    with pytest.raises(ValueError, match="sizes|patch"):
        update_thresholds(saved, other)
    before = saved.read_bytes()
    with pytest.raises(ValueError):
        update_thresholds(saved, Thresholds(np.full((1, 2), 0.5), budget=1e6))
    assert saved.read_bytes() == before  # a refused update leaves the file as it was


# ---------------------------------------------------------------- failing writes

def _disk_full_midway(obj, file, *args, **kwargs):
    file.write(b"the first bytes of a checkpoint")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_keeps_the_previous_checkpoint_and_its_thresholds(model, saved, monkeypatch):
    old = Thresholds(np.full((2, 2), 0.5), budget=1e6, sizes=(32, 48))
    update_thresholds(saved, old)
    before = saved.read_bytes()
    monkeypatch.setattr(torch, "save", _disk_full_midway)
    with pytest.raises(OSError, match=f"could not write {saved}.*previous file is unchanged") as caught:
        update_thresholds(saved, Thresholds(np.full((2, 2), 0.9), budget=2e6, sizes=(32, 48)))
    assert caught.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match=str(saved)):
        msgf.save_checkpoint(model, saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert [t.to_dict() for t in msgf.load_checkpoint(saved).exit_thresholds] == [old.to_dict()]
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]
