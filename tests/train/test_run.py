"""Whole training runs on tiny scenes: outputs, determinism, kill-and-resume, 2-process DDP."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from msgf.checkpoint import load_checkpoint, read_checkpoint
from msgf.cli import main as msgf_main

TINY = ["--preset", "smoke", "--image-size", "64x96", "--glance", "32", "--sizes", "32,48", "--T", "3",
        "--train-samples", "48", "--val-samples", "24", "--test-samples", "24", "--batch-size", "16",
        "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _train(out: Path, *extra: str, env=ENV, **popen):
    command = [sys.executable, "-m", "msgf", "train", *TINY, "--out", str(out), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _weights(path: Path) -> dict:
    return read_checkpoint(path)["state_dict"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Every stage, one epoch each, in a subprocess (as a user runs it)."""
    out = tmp_path_factory.mktemp("full")
    proc = _train(out, "--epochs", "1,1,1,1")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    return out, output


def test_full_run_writes_what_evaluate_and_search_thresholds_take(full_run, tmp_path):
    out, output = full_run
    for name in ("stage0.ckpt", "stage1.ckpt", "stage2.ckpt", "stage3.ckpt", "model.ckpt", "log.csv",
                 "summary.json", "val_trajectories.npz", "test_trajectories.npz", "train_state.ckpt"):
        assert (out / name).exists(), name
    assert "MACs per step" in output and "t=1" in output and "hit rate" in output
    model = load_checkpoint(out / "model.ckpt")
    assert model.config.patch_sizes == (32, 48) and model.config.T == 3
    summary = json.loads((out / "summary.json").read_text())
    final = summary["results"]["stage3"]
    assert len(final["accuracy_policy"]) == 3 and len(final["hit_rate_random"]) == 2
    assert final["num_samples"] == 24
    log = (out / "log.csv").read_text().splitlines()
    assert log[0] == "time,stage,epoch,split,key,value"
    assert any(",stage2,0,val,hit_rate_policy[0]," in line for line in log)

    report = tmp_path / "eval.json"
    assert msgf_main(["evaluate", str(out / "model.ckpt"), "--data", "synthsigns", "--image-size", "64x96",
                      "--num-samples", "8", "--anytime", "--no-progress", "--out", str(report)]) == 0
    assert json.loads(report.read_text())["mode"] == "anytime"
    budget = str(int(model.path_macs([32])))
    assert msgf_main(["search-thresholds", "--trajectories", str(out / "val_trajectories.npz"),
                      "--test", str(out / "test_trajectories.npz"), "--budget", budget,
                      "--method", "geometric", "--out", str(tmp_path / "thr.json")]) == 0


def _kill_when(proc, out: Path, reached) -> dict:
    """SIGKILL the run once its saved position satisfies `reached`; that position."""
    state_file = out / "train_state.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists():
            try:
                position = read_checkpoint(state_file)["extra"]["train_state"]["position"]
            except Exception:  # being replaced right now
                position = None
            if position is not None and reached(position):
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=60)
                return position
        time.sleep(0.02)
    proc.communicate(timeout=60)
    raise AssertionError("the run finished before it could be killed")


def test_same_seed_same_result_and_resume_after_sigkill(full_run, tmp_path):
    reference, _ = full_run
    out = tmp_path / "killed"
    proc = _train(out, "--epochs", "1,1,1,1", "--no-trajectories")
    # stage 0 done, a later stage running
    killed_at = _kill_when(proc, out, lambda position: position["stage_pos"] >= 1)
    assert killed_at["stage_pos"] < 4 and not (out / "model.ckpt").exists()

    resumed = _train(out, "--epochs", "1,1,1,1", "--no-trajectories", "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resuming from" in output
    # the interrupted-and-resumed run ends exactly where the uninterrupted one (same seed) did
    _assert_same_weights(_weights(out / "model.ckpt"), _weights(reference / "model.ckpt"))
    history = read_checkpoint(out / "train_state.ckpt")["extra"]["train_state"]["position"]["history"]
    assert [(row["stage"], row["epoch"]) for row in history] == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_resume_inside_stage0_restores_the_locator(tmp_path):
    # the locator head lives outside the model (train state only): a run killed between
    # stage 0's epochs must resume it, or f_G's second epoch starts from a fresh head
    epochs = ("--epochs", "2,0,0,0", "--no-trajectories")
    reference = _train(tmp_path / "reference", *epochs)
    output, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, output
    out = tmp_path / "killed"
    killed_at = _kill_when(_train(out, *epochs), out, lambda position: position["epoch"] >= 1)
    assert killed_at["stage_pos"] == 0 and killed_at["stage_state"] is not None
    resumed = _train(out, *epochs, "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    _assert_same_weights(_weights(out / "model.ckpt"), _weights(tmp_path / "reference" / "model.ckpt"))
    # the model keeps stage 0's best epoch, which may be the first: the second epoch's losses
    # (the locate loss among them) must match too
    def epochs_of(run):
        history = read_checkpoint(run / "train_state.ckpt")["extra"]["train_state"]["position"]["history"]
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert epochs_of(out) == epochs_of(tmp_path / "reference")
    assert len(epochs_of(out)) == 2


def test_resume_refuses_another_config(full_run, tmp_path):
    out = tmp_path / "other"
    proc = _train(out, "--epochs", "1,0,0,0", "--no-trajectories")
    assert proc.communicate(timeout=300)[1] is None and proc.returncode == 0
    proc = _train(out, "--epochs", "2,0,0,0", "--no-trajectories", "--resume")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "another config" in output


def test_init_from_another_patch_size_set_keeps_every_shared_weight(full_run, tmp_path):
    # msgf reproduce's fixed-size runs start from MS-GFNet's stage0.ckpt: with no training
    # epochs, the new model holds the checkpoint's weights except pi's size-dependent input
    source = full_run[0] / "stage0.ckpt"
    out = tmp_path / "fixed"
    proc = _train(out, "--sizes", "48", "--init", str(source), "--stages", "1", "--epochs", "0,0,0,0",
                  "--no-trajectories")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "kept at initialisation: policy.cell.weight_ih" in output
    theirs, ours = _weights(source), _weights(out / "stage1.ckpt")
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k].shape != theirs[k].shape] == ["policy.cell.weight_ih"]
    _assert_same_weights({k: v for k, v in ours.items() if k != "policy.cell.weight_ih"},
                         {k: v for k, v in theirs.items() if k != "policy.cell.weight_ih"})

    proc = _train(tmp_path / "other", "--glance", "48", "--init", str(source), "--stages", "1")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "--init checkpoint" in output


def test_keep_incoming_weights_keeps_them_unless_an_epoch_scores_higher(full_run, tmp_path, capsys):
    import re

    from msgf.train.loop import RunOptions, train
    from msgf.train.presets import preset

    config = preset("smoke", glance_size=32, patch_sizes=(32, 48), T=3, keep_incoming_weights=True,
                    export_trajectories=False, **{"data.image_size": (64, 96), "data.train_samples": 48,
                                                  "data.val_samples": 24, "data.test_samples": 24,
                                                  "data.batch_size": 16, "stage3.epochs": 1,
                                                  "stage3.lr_classifier": 0.5, "stage3.lr_encoders": 0.5})
    incoming = full_run[0] / "stage2.ckpt"
    train(config, RunOptions(out=tmp_path, stages=(3,), init=incoming, progress=False))
    output = capsys.readouterr().out
    before = float(re.search(r"incoming weights score ([0-9.]+)", output).group(1))
    after = float(re.search(r"stage3 epoch 1/1 .*\| score ([0-9.]+)", output).group(1))
    theirs, ours = _weights(incoming), _weights(tmp_path / "stage3.ckpt")
    unchanged = all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert unchanged == (after <= before), (before, after)


def test_only_weights_trained_on_episodes_are_kept_as_incoming(tmp_path, capsys):
    # Stage I right after stage 0 starts with f_C's glance head untrained: nothing to keep, so
    # no validation pass for it, and its epoch is kept. Stage III after stage I has something.
    from msgf.train.loop import RunOptions, train
    from msgf.train.presets import preset

    config = preset("smoke", glance_size=32, patch_sizes=(32, 48), T=3, keep_incoming_weights=True,
                    export_trajectories=False, **{"data.image_size": (64, 96), "data.train_samples": 32,
                                                  "data.val_samples": 16, "data.test_samples": 16,
                                                  "data.batch_size": 16, "stage0.epochs": 1, "stage1.epochs": 1,
                                                  "stage2.epochs": 0, "stage3.epochs": 1})
    train(config, RunOptions(out=tmp_path, stages=(0, 1, 3), progress=False))
    output = capsys.readouterr().out
    assert "stage1: the incoming weights" not in output
    assert "stage3: the incoming weights score" in output
    stage0, stage1 = _weights(tmp_path / "stage0.ckpt"), _weights(tmp_path / "stage1.ckpt")
    trained = [k for k in stage0 if k.startswith("classifier.") and not torch.equal(stage0[k], stage1[k])]
    assert trained, "stage I's epoch was not kept"


def test_stage3_without_classify_unseen_counts_f_C_only_once_pi_has_seen_the_object(full_run, tmp_path):
    # One patch size and pi's locations: the episode is fixed, so the step's loss can be restated
    # here: f_C's cross-entropy at the glance always, at a focus step only for samples whose
    # box centre lies in one of the patches so far (or that have no box); every FC_t's always.
    import torch.nn.functional as F

    from msgf import ops
    from msgf.train.loop import RunOptions, Trainer
    from msgf.train.presets import preset
    from msgf.train.stages import PolicyPatchTraining

    config = preset("smoke", glance_size=32, patch_sizes=(32,), T=3, export_trajectories=False, **{
        "data.image_size": (64, 96), "data.train_samples": 48, "data.val_samples": 24, "data.test_samples": 24,
        "data.batch_size": 16, "stage3.epochs": 1, "stage3.lr_classifier": 0.0, "stage3.lr_encoders": 0.0,
        "stage3.weight_decay": 0.0, "stage3.classify_unseen": False})
    trainer = Trainer(config, RunOptions(out=tmp_path, stages=(3,), init=full_run[0] / "stage2.ckpt",
                                         progress=False))
    try:
        stage = PolicyPatchTraining(trainer)
        trainable = stage.prepare()
        batch = next(iter(stage.batches(0)))
        model = trainer.model.train()
        images, labels, boxes = batch["images"], batch["labels"], batch["boxes"]
        with torch.no_grad():
            states = model(images, 32)
            seen = torch.tensor([len(b) == 0 for b in boxes])
            expected = []
            for t, state in enumerate(states):
                if t > 0:
                    where = model.propose(states[t - 1], 32).mean.clamp(0, 1)
                    x0, y0, x1, y1 = ops.focus_boxes(where, 32, (64, 96))[:, 1:].unbind(1)
                    for b, box in enumerate(boxes):
                        if len(box):
                            cx, cy = float(box[0, 0] + box[0, 2]) / 2, float(box[0, 1] + box[0, 3]) / 2
                            seen[b] |= bool(x0[b] <= cx < x1[b] and y0[b] <= cy < y1[b])
                counted = torch.ones(len(labels)) if t == 0 else seen.float()
                expected.append((F.cross_entropy(state.logits, labels, reduction="none") * counted).mean()
                                + F.cross_entropy(model.aux_logits(state), labels))
        assert 0 < int(seen.sum()) < len(labels)  # both kinds of sample are in the batch
        stats = stage.step(trainable.module, trainable.optimizer, batch, torch.Generator().manual_seed(0))
        assert stats["loss"] == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)
    finally:
        trainer.close()


def test_two_process_gloo_run_ends_with_identical_weights(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(worker),
               str(tmp_path), *TINY, "--epochs", "1,1,1,1", "--no-trajectories"]
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    _assert_same_weights(rank0, rank1)
    # and training moved them: the checkpoint rank 0 wrote holds the same trained weights
    _assert_same_weights(rank0, _weights(tmp_path / "model.ckpt"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["results"]["stage3"]["num_samples"] == 24


def test_stage0_with_a_frozen_glance_encoder_trains_only_the_locator_and_f_L(tmp_path):
    from msgf.train import RunOptions, train
    from msgf.train.presets import preset

    config = preset("smoke", glance_size=32, patch_sizes=(32, 48), T=3, **{
        "data.image_size": (64, 96), "data.train_samples": 48, "data.val_samples": 16, "data.test_samples": 16,
        "data.batch_size": 16, "stage0.epochs": 1, "stage0.freeze_glance_encoder": True})
    before = tmp_path / "before"  # the same model, untrained
    untrained = dataclasses.replace(config, stage0=dataclasses.replace(config.stage0, epochs=0))
    train(untrained, RunOptions(out=before, stages=(0,), progress=False))
    train(config, RunOptions(out=tmp_path / "after", stages=(0,), progress=False))
    first, trained = _weights(before / "model.ckpt"), _weights(tmp_path / "after" / "model.ckpt")
    glance = [k for k in first if k.startswith("global_encoder.")]
    local = [k for k in first if k.startswith("local_encoder.") and first[k].is_floating_point()]
    assert all(torch.equal(first[k], trained[k]) for k in glance)  # BatchNorm statistics included
    assert any(not torch.equal(first[k], trained[k]) for k in local)


def test_stage0_reads_f_ls_crops_at_their_input_sides(tmp_path, monkeypatch):
    from msgf.models import backbones
    from msgf.train import RunOptions, train
    from msgf.train.presets import preset

    sides = []
    forward = backbones.Backbone.forward
    monkeypatch.setattr(backbones.Backbone, "forward", lambda self, x: sides.append(x.shape[-1]) or forward(self, x))
    config = preset("smoke", glance_size=40, patch_sizes=(32, 48), patch_input_sizes=(56, 64), T=3, **{
        "data.image_size": (64, 96), "data.train_samples": 32, "data.val_samples": 16, "data.test_samples": 16,
        "data.batch_size": 16, "stage0.epochs": 1, "stage0.glance_samples": 0, "stage0.locate_weight": 0.0,
        "stage0.seed_policy": False})
    train(config, RunOptions(out=tmp_path / "run", stages=(0,), progress=False))
    # the glance at 40 px; f_L's 32 and 48 px crops only ever resized to 56 and 64 px, in
    # training (one size a step), validation (the middle size) and the test pass
    assert {40, 64} <= set(sides) <= {40, 56, 64}


def test_a_frozen_glance_encoder_fits_the_locator_apart_and_is_asked_each_glance_once(tmp_path, monkeypatch, capsys):
    # stage 0 fits the two-layer locator on f_G's maps, computed once; f_G stays fixed through
    # stages 0-2, so its outputs come from the memo after the first pass over a split. Oracle:
    # the same run with the memo off ends with the same weights and test accuracies.
    from msgf.train import RunOptions, loop, train

    memos = []

    class CountingMemo(loop.OutputMemo):
        def __init__(self):
            super().__init__()
            memos.append(self)

    monkeypatch.setattr(loop, "OutputMemo", CountingMemo)
    config = _frozen_locator_config()
    options = dict(stages=(0, 1, 2), progress=False)
    summary = train(config, RunOptions(out=tmp_path / "memo", **options))
    assert len(memos) == 1  # one memo for the whole run: f_G never changes
    # every split's glances computed once: 32 training scenes and 16 + 16 evaluation scenes;
    # from memory: stage I's and stage II's training (32 each), validation (16 each) and
    # stage II's test pass (16)
    assert memos[0].misses == 64 and memos[0].hits == 2 * 32 + 2 * 16 + 16
    assert "stage0 locator: 3 passes over 32 glance maps" in capsys.readouterr().out

    monkeypatch.setattr(loop.Trainer, "_keep_glance_outputs", lambda self, keep: None)
    plain = train(config, RunOptions(out=tmp_path / "plain", **options))
    assert plain["results"] == summary["results"]
    memo_weights, plain_weights = _weights(tmp_path / "memo" / "model.ckpt"), _weights(tmp_path / "plain" / "model.ckpt")
    for name, value in plain_weights.items():
        torch.testing.assert_close(memo_weights[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_the_locator_fits_on_the_maps_of_more_scenes_than_the_training_split(tmp_path, capsys):
    # glance_samples > train_samples with a frozen f_G: the locator (3x3, pi's kernel) fits on
    # f_G's maps of the first 40 training scenes, which the scene set keeps instead of glances,
    # and pi starts from it. Oracles: f_G's maps of those scenes computed here, and pi's cell
    # scores against the locator's own presence logits.
    from msgf import ops
    from msgf.data.synthsigns import render_scene

    config = _frozen_locator_config(policy_channels=8, policy_kernel=3, **{
        "data.train_samples": 16, "stage0.locator_epochs": 2, "stage0.locator_kernel": 3,
        "stage0.glance_samples": 40, "stage0.local_samples": 24, "stage1.epochs": 0, "stage2.epochs": 0})
    trainer, built, seeded = _stage0_recorded(config, tmp_path)
    assert "stage0 locator: 2 passes over 40 glance maps" in capsys.readouterr().out
    scenes = built[0]
    assert scenes.glances is None and len(scenes) == 40 and scenes.regions.shape[0] == 40
    model, (locator, sharpness) = trainer.model.eval(), seeded[-1]
    images = torch.stack([torch.from_numpy(render_scene(i, "train", 0, (64, 96)).image) for i in (0, 39)])
    with torch.no_grad():
        maps = model.global_encoder(ops.glance(images, 32, mean=model.config.mean, std=model.config.std))[0]
        torch.testing.assert_close(scenes.maps[[0, 39]].float(), maps, atol=2e-2, rtol=1e-2)
        scores = model.policy.cell_score(torch.relu(model.policy.reduce(maps)))[:, 0]
        torch.testing.assert_close(scores, sharpness * locator(maps)[:, 0], rtol=1e-4, atol=1e-4)
    assert tuple(model.policy.reduce.weight.shape[2:]) == (3, 3)


def test_f_gs_last_blocks_fine_tune_with_the_locator_on_the_scene_sets_inputs(tmp_path, capsys):
    # locator_finetune_epochs: the scene set keeps the inputs of f_G's last blocks (Lite0's
    # stride-8 map), the locator fits on the maps those blocks make of them, then both train.
    # Oracles: timm's layers called one by one on the scenes' glances, f_G's weights as they
    # were when the scene set was built, and pi's cell scores against the locator's own logits
    # on f_G's map.
    import copy

    from msgf import ops
    from msgf.data.synthsigns import render_scene

    before = []
    config = _frozen_locator_config(
        backbone="efficientnet_lite0", pretrained=None, map_stride=16, policy_channels=8, policy_kernel=3,
        **{"data.train_samples": 16, "stage0.locator_epochs": 2, "stage0.locator_kernel": 3,
           "stage0.glance_samples": 40, "stage0.local_samples": 24, "stage0.locator_finetune_epochs": 2,
           "stage1.epochs": 0, "stage2.epochs": 0})
    trainer, built, seeded = _stage0_recorded(
        config, tmp_path, lambda stage: before.append(copy.deepcopy(stage.model.global_encoder.state_dict())))
    assert "stage0 f_G's last blocks fine-tuned with the locator: 2 passes over 40 glances" in capsys.readouterr().out
    model, (locator, sharpness) = trainer.model.eval(), seeded[-1]
    net = model.global_encoder.trunk.model
    images = torch.stack([torch.from_numpy(render_scene(i, "train", 0, (64, 96)).image) for i in (0, 39)])
    glances = ops.glance(images, 32, mean=model.config.mean, std=model.config.std)
    after = copy.deepcopy(model.global_encoder.state_dict())
    changed = {name for name, value in after.items() if not torch.equal(value, before[0][name])}
    assert changed and all(name.startswith(("trunk.model.blocks.3.", "trunk.model.blocks.4.")) for name in changed)
    assert not any("running" in name for name in changed)  # BatchNorm kept its statistics
    with torch.no_grad():
        model.global_encoder.load_state_dict(before[0])
        finer = glances
        for layer in (net.conv_stem, net.bn1, *net.blocks[:3]):
            finer = layer(finer)
        torch.testing.assert_close(built[0].maps[[0, 39]].float(), finer, atol=2e-2, rtol=1e-2)
        model.global_encoder.load_state_dict(after)
        maps = model.global_encoder(glances)[0]
        scores = model.policy.cell_score(torch.relu(model.policy.reduce(maps)))[:, 0]
        torch.testing.assert_close(scores, sharpness * locator(maps)[:, 0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="locator_finetune_epochs"):
        _frozen_locator_config(**{"stage0.locator_finetune_epochs": 1})  # no scene set to tune on


def _stage0_recorded(config, out, before_scene_set=None):
    """(trainer, scene sets built, (locator, sharpness) pi was seeded from) of stage 0 of `config`;
    `before_scene_set(stage)` runs before the scene set is built."""
    from msgf.train import RunOptions, loop
    from msgf.train.stages import stage0

    built, seeded = [], []
    scene_set, seed_policy = stage0.EncoderTraining._scene_set, stage0.seed_policy

    def build(stage):
        if before_scene_set is not None:
            before_scene_set(stage)
        built.append(scene_set(stage))
        return built[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage0.EncoderTraining, "_scene_set", build)
        patch.setattr(stage0, "seed_policy", lambda policy, locator, sharpness: (
            seeded.append((locator, sharpness)), seed_policy(policy, locator, sharpness)))
        trainer = loop.Trainer(config, RunOptions(out=out, stages=(0,), progress=False))
        try:
            trainer.run()
        finally:
            trainer.close()
    return trainer, built, seeded


def _frozen_locator_config(**overrides):
    """smoke at 64x96 with f_G frozen and a two-layer locator fitted apart (cpu-demo's form)."""
    from msgf.train.presets import preset

    return preset("smoke", glance_size=32, patch_sizes=(32, 48), T=3, **{
        "data.image_size": (64, 96), "data.train_samples": 32, "data.val_samples": 16, "data.test_samples": 16,
        "data.batch_size": 16, "stage0.epochs": 1, "stage0.freeze_glance_encoder": True, "stage0.train_glance": False,
        "stage0.locator_epochs": 3, "stage0.locator_hidden": 8, "stage1.epochs": 1,
        "stage1.freeze_glance_encoder": True, "stage2.epochs": 1, "export_trajectories": False,
        "stage0.glance_samples": 0, "stage0.local_samples": 0, **overrides})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_stage_trains_on_the_device_and_its_checkpoint_loads_on_the_host(tmp_path):
    proc = _train(tmp_path, "--epochs", "1,1,1,1", "--device", "cuda")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    model = load_checkpoint(tmp_path / "model.ckpt", map_location="cpu")
    assert all(not p.is_cuda and torch.isfinite(p).all() for p in model.parameters())
    assert (tmp_path / "val_trajectories.npz").exists() and (tmp_path / "test_trajectories.npz").exists()


def test_test_stages_last_measures_only_the_model_the_run_ends_with(full_run, tmp_path, capsys):
    import json

    from msgf.train.loop import RunOptions, train
    from msgf.train.presets import preset

    config = preset("smoke", glance_size=32, patch_sizes=(32, 48), T=3, test_stages="last",
                    export_trajectories=False, **{"data.image_size": (64, 96), "data.train_samples": 32,
                                                  "data.val_samples": 16, "data.test_samples": 16,
                                                  "data.batch_size": 16, "stage1.epochs": 1, "stage2.epochs": 0,
                                                  "stage3.epochs": 1})
    train(config, RunOptions(out=tmp_path, stages=(1, 2, 3), init=full_run[0] / "stage0.ckpt", progress=False))
    output = capsys.readouterr().out
    assert "stage3 (best epoch) on the test set" in output and "stage1 (best epoch) on the test set" not in output
    results = json.loads((tmp_path / "summary.json").read_text())["results"]
    assert sorted(k for k in results if k.startswith("stage")) == ["stage3"]
    with pytest.raises(ValueError, match="test_stages"):
        preset("smoke", test_stages="first")
