"""Training on files never scores a training image (issue 30): every image file decoded is
recorded with what decoded it (a stage's validation or test, the trajectory export, a
downstream command, or training), and the scored ones are compared with the manifests."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

import msgf.engine
from msgf.cli import main as msgf_main
from msgf.data import files, read_manifest
from msgf.train import RunOptions, preset, train
from msgf.train.stages import STAGES

SCENES = {"train": 48, "val": 16, "test": 16}


class Reads:
    """The absolute path of every image decoded, per phase ("train" outside any scoring)."""

    def __init__(self, monkeypatch):
        self.phase, self.paths = "train", {}
        decode = files.decode_image

        def recording(path, *args, **kwargs):
            self.paths.setdefault(self.phase, set()).add(os.path.abspath(path))
            return decode(path, *args, **kwargs)

        monkeypatch.setattr(files, "decode_image", recording)
        for stage in STAGES.values():
            monkeypatch.setattr(stage, "validate", self.scoring("val", stage.validate))
            monkeypatch.setattr(stage, "test", self.scoring("test", stage.test))
        monkeypatch.setattr(msgf.engine, "export_trajectories",
                            self.scoring("export", msgf.engine.export_trajectories))

    @contextlib.contextmanager
    def during(self, phase: str):
        outer, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = outer

    def scoring(self, phase: str, function):
        @functools.wraps(function)
        def wrapped(*args, **kwargs):  # inside a command's phase, the reads stay the command's
            with self.during(phase) if self.phase == "train" else contextlib.nullcontext():
                return function(*args, **kwargs)
        return wrapped

    def __getitem__(self, phase: str) -> set[str]:
        return self.paths.get(phase, set())

    def scored(self) -> set[str]:
        return set().union(*(paths for phase, paths in self.paths.items() if phase != "train"))


def _images(manifest: Path) -> set[str]:
    return {os.path.abspath(manifest.parent / record.path) for record in read_manifest(manifest)[0]}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    for split, num in SCENES.items():
        assert msgf_main(["data", "synth", "--out", str(folder), "--split", split, "--num", str(num),
                          "--size", "240x320", "--seed", "2", "--no-progress"]) == 0
    return folder


def _config(source: str):
    # smaller than smoke: 64x96 images, 32 px glance, one epoch of stages 0 and I (I ends with
    # the test pass and the trajectory export); nothing cached, so every pass decodes its files
    return preset("smoke", glance_size=32, patch_sizes=(32, 48), T=3, **{
        "data.source": source, "data.image_size": (64, 96), "data.batch_size": 16, "data.cache": False,
        "data.cache_workers": 0, "stage0.epochs": 1, "stage1.epochs": 1})


def _run(source, out: Path, reads: Reads) -> dict:
    train(_config(source), RunOptions(out=out, stages=(0, 1), progress=False))
    return json.loads((out / "summary.json").read_text())


def test_a_run_on_three_split_files_scores_only_validation_and_test_images(scenes, tmp_path, monkeypatch, capsys,
                                                                           single_torch_thread):
    reads = Reads(monkeypatch)
    summary = _run(str(scenes), tmp_path, reads)  # the folder msgf data synth wrote: its files serve each role
    train_images, val_images, test_images = (_images(scenes / f"{split}.csv") for split in ("train", "val", "test"))
    assert reads["val"] == val_images  # each epoch's validation: the validation file, all of it
    assert reads["test"] == test_images  # the stage's test pass
    assert reads["export"] == val_images | test_images  # the trajectory files
    assert not reads.scored() & train_images
    assert reads["train"] <= train_images  # and training never read a validation or test image
    log = capsys.readouterr().out
    assert f"data: val   16 images of {scenes / 'val.csv'}" in log
    assert f"on the test set, {scenes / 'test.csv'} (16 images" in log
    for role in ("train", "val", "test"):
        entry = summary["splits"][role]
        assert entry["source"] == str(scenes / f"{role}.csv") and entry["images"] == SCENES[role]
        assert entry["sha256"] == hashlib.sha256((scenes / f"{role}.csv").read_bytes()).hexdigest()
    payload = torch.load(tmp_path / "model.ckpt", weights_only=True)
    assert payload["extra"]["training"]["splits"] == summary["splits"]
    assert torch.load(tmp_path / "stage1.ckpt", weights_only=True)["extra"]["training"]["splits"] == summary["splits"]

    # downstream, without --data: the recorded test set, then the recorded validation and test sets
    reads.paths.clear()
    with reads.during("evaluate"):
        assert msgf_main(["evaluate", str(tmp_path / "model.ckpt"), "--anytime", "--no-progress",
                          "--out", str(tmp_path / "eval.json")]) == 0
    assert reads["evaluate"] == test_images
    assert json.loads((tmp_path / "eval.json").read_text())["num_samples"] == SCENES["test"]
    with reads.during("search"):
        assert msgf_main(["search-thresholds", "--ckpt", str(tmp_path / "model.ckpt"), "--budget", "5M",
                          "--method", "geometric"]) == 0
    assert reads["search"] == val_images | test_images
    # the training file given by hand is read, with a warning that says what it is
    with reads.during("evaluate"):
        assert msgf_main(["evaluate", str(tmp_path / "model.ckpt"), "--data", str(scenes), "--split", "train",
                          "--image-size", "64x96", "--anytime", "--no-progress",
                          "--out", str(tmp_path / "eval.json")]) == 0
    assert "is the training data of" in capsys.readouterr().err


def test_a_run_on_one_training_file_validates_on_held_out_images_and_reports_no_test(scenes, tmp_path, monkeypatch,
                                                                                       capsys, single_torch_thread):
    reads = Reads(monkeypatch)
    (tmp_path / "test_trajectories.npz").write_bytes(b"an earlier run's")
    summary = _run(str(scenes / "train.csv"), tmp_path, reads)
    train_images = _images(scenes / "train.csv")
    assert len(reads["val"]) == 5  # round(0.1 * 48), stratified; smoke's 96 does not cap it
    assert reads["val"] <= train_images and not reads["val"] & reads["train"]
    assert reads["train"] == train_images - reads["val"]  # every other training image trains
    assert reads["test"] == set() and reads["export"] == reads["val"]
    held_out = reads["val"]
    assert not (tmp_path / "test_trajectories.npz").exists()  # the stale one is gone
    log = capsys.readouterr().out
    assert "data: val   5 images held out of" in log and "stratified by class" in log
    assert "data: test  none: no test set was given, so this run reports no test numbers" in log
    assert "on the test set" not in log and summary["results"] == {}
    assert summary["splits"]["test"] is None and summary["splits"]["val"]["carved_from_train"] is True

    # downstream: the same held-out images, rebuilt from the record; no test set to evaluate
    reads.paths.clear()
    with reads.during("search"):
        assert msgf_main(["search-thresholds", "--ckpt", str(tmp_path / "model.ckpt"), "--budget", "5M",
                          "--method", "geometric"]) == 0
    assert "trained without a test set" in capsys.readouterr().err
    assert reads["search"] == held_out
    assert msgf_main(["evaluate", str(tmp_path / "model.ckpt"), "--anytime", "--no-progress"]) == 2
    assert "records no test set" in capsys.readouterr().err
    assert msgf_main(["search-thresholds", "--trajectories", str(tmp_path / "val_trajectories.npz"),
                      "--test", str(tmp_path / "test_trajectories.npz"), "--budget", "5M"]) == 2
    assert "writes no test_trajectories.npz" in capsys.readouterr().err
