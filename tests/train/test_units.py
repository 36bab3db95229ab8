"""Presets, the hit rate, training crops and the per-epoch random streams."""
from __future__ import annotations

import pytest
import torch

from msgf import ops
from msgf.train.data import generator, stream_seed
from msgf.train.metrics import patch_hits
from msgf.train.presets import PRESETS, TrainConfig, paper_for_backbone, preset
from msgf.train.sampling import _containing, centred_crops, object_seen, training_crops
from msgf.train.weights import load_matching


def test_presets_build_and_round_trip():
    for name in PRESETS:
        config = PRESETS[name]()
        assert TrainConfig.from_dict(config.to_dict()) == config
    demo = preset("cpu-demo")
    assert demo.data.image_size == (960, 1280) and demo.backbone == "efficientnet_lite0"
    assert demo.pretrained == "DEFAULT" and preset("cpu-demo-scratch").pretrained is None
    # A glance at most 1/3 of the scene's scale (256 px: the rings at 5-15 px), patches that
    # hold a sign but not much more.
    assert demo.glance_size * 3 <= 960 and max(demo.patch_sizes) < 960 // 4
    assert preset("imagenet-384").backbone == "resnet50" and 160 in preset("imagenet-384").patch_sizes
    sts = preset("sts")
    assert sts.backbone == "resnet18" and 192 in sts.patch_sizes and sts.data.image_size == (960, 1280)


def test_preset_overrides_nested_and_rejects_unknown():
    config = preset("smoke", T=4, patch_sizes=(64, 32), **{"stage2.reward": "increments", "data.batch_size": 8})
    assert config.T == 4 and config.patch_sizes == (32, 64)
    assert config.stage2.reward == "increments" and config.data.batch_size == 8
    assert preset("smoke", seed=None).seed == 0  # None means "keep the preset's"
    with pytest.raises(ValueError, match="unknown stage2"):
        preset("smoke", **{"stage2.gama": 0.5})
    with pytest.raises(ValueError, match="reward"):
        preset("smoke", **{"stage2.reward": "other"})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")


def test_paper_preset_per_family():
    assert paper_for_backbone("mobilenet_v3_large").classifier == "fc"
    assert paper_for_backbone("resnet50").classifier is None  # the family default: GRU
    assert preset("paper", backbone="densenet121").stage1.lr_encoders < preset("paper").stage1.lr_encoders
    assert preset("paper").stage2.gamma == 0.7 and preset("paper").stage2.clip == 0.2
    # the paper starts every encoder from ImageNet weights
    assert preset("paper").pretrained == preset("imagenet-480").pretrained == preset("sts").pretrained == "DEFAULT"


def test_patch_hits_hand_example():
    # 100 x 200 image, 50 px patches. loc (0, 0): patch x 0..50, y 0..50.
    # loc (1, 1): top = floor(1 * (100 - 50)) = 50, left = floor(1 * (200 - 50)) = 150 -> x 150..200, y 50..100.
    # loc (0.5, 0.5): top 25, left 75 -> x 75..125, y 25..75.
    locs = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])
    boxes = [
        torch.tensor([[40.0, 40.0, 60.0, 60.0]]),  # overlaps the corner patch
        torch.tensor([[50.0, 0.0, 60.0, 10.0]]),  # touches its right edge only: zero area, no hit
        torch.tensor([[10.0, 10.0, 20.0, 20.0], [149.0, 99.0, 151.0, 120.0]]),  # second box overlaps
        torch.tensor([[0.0, 0.0, 75.0, 25.0]]),  # touches the corner at (75, 25): no hit
        torch.tensor([[124.5, 74.5, 130.0, 80.0]]),  # half a pixel inside: hit
        torch.zeros((0, 4)),  # no box (EMPTY): never a hit
    ]
    hits = patch_hits(locs, 50, (100, 200), boxes)
    assert hits.tolist() == [True, False, True, False, True, False]


def test_training_crops_contain_the_object_box():
    gen = torch.Generator().manual_seed(0)
    boxes = [torch.tensor([[100.0, 30.0, 120.0, 52.0]]), torch.zeros((0, 4)), torch.tensor([[0.0, 0.0, 5.0, 5.0]])]
    for _ in range(50):
        crops = training_crops(boxes, 32, (120, 160), gen, object_crops=True)
        assert crops[:, 0].tolist() == [0, 1, 2]
        assert torch.all(crops[:, 3] - crops[:, 1] == 32) and torch.all(crops[:, 4] - crops[:, 2] == 32)
        assert crops[:, 1:].min() >= 0 and crops[:, 3].max() <= 160 and crops[:, 4].max() <= 120
        x0, y0, x1, y1 = crops[0, 1:].tolist()
        assert x0 <= 100 and x1 >= 120 and y0 <= 30 and y1 >= 52
        assert crops[2, 1:].tolist() == [0, 0, 32, 32]
    # an object larger than the window: the window is centred on it
    assert _containing(10.0, 90.0, 40, 200) == (30, 30)
    centred = centred_crops([torch.tensor([[100.0, 30.0, 120.0, 52.0]]), torch.zeros((0, 4))], 32, (120, 160))
    assert centred.tolist() == [[0, 94, 25, 126, 57], [1, 64, 44, 96, 76]]


def test_random_streams_are_per_stage_epoch_rank():
    a = torch.rand(4, generator=generator(0, 1, 2, 0))
    assert torch.equal(a, torch.rand(4, generator=generator(0, 1, 2, 0)))
    seeds = {stream_seed(0, 1, 2, 0), stream_seed(0, 1, 3, 0), stream_seed(0, 2, 2, 0), stream_seed(0, 1, 2, 1),
             stream_seed(1, 1, 2, 0), stream_seed(0, 1, 2, 0, "ppo")}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)


def test_object_locations_place_patches_over_the_box():
    from msgf.train.sampling import object_locations

    gen = torch.Generator().manual_seed(0)
    boxes = [torch.tensor([[100.0, 30.0, 120.0, 52.0]]), torch.zeros((0, 4))]
    sizes = torch.tensor([[32, 48, 32], [32, 32, 32]])
    random = torch.rand((2, 3, 2), generator=torch.Generator().manual_seed(1))
    locs = object_locations(random, boxes, sizes, (120, 160), gen, fraction=1.0)
    assert torch.equal(locs[1], random[1])  # no box: untouched
    for t in range(3):
        assert patch_hits(locs[0, t][None], int(sizes[0, t]), (120, 160), boxes[:1]).item()
        # the patch contains the whole box, not just part of it
        x0, y0, x1, y1 = ops.focus_boxes(locs[0, t][None], int(sizes[0, t]), (120, 160))[0, 1:].tolist()
        assert x0 <= 100 and x1 >= 120 and y0 <= 30 and y1 >= 52
    assert torch.equal(object_locations(random, boxes, sizes, (120, 160), gen, fraction=0.0), random)


def test_training_crops_use_distractors_as_hard_negatives():
    gen = torch.Generator().manual_seed(0)
    boxes = [torch.zeros((0, 4)), torch.tensor([[10.0, 10.0, 20.0, 20.0]]), torch.zeros((0, 4))]
    distractors = [torch.tensor([[120.0, 80.0, 136.0, 100.0]]), torch.tensor([[130.0, 90.0, 140.0, 100.0]]),
                   torch.zeros((0, 4))]
    for _ in range(30):
        crops = training_crops(boxes, 32, (120, 160), gen, object_crops=True, distractors=distractors)
        x0, y0, x1, y1 = crops[0, 1:].tolist()  # EMPTY sample: over its decoy
        assert x0 <= 120 and x1 >= 136 and y0 <= 80 and y1 >= 100
        x0, y0, x1, y1 = crops[1, 1:].tolist()  # a target: over the target, never the decoy
        assert x0 <= 10 and x1 >= 20 and y0 <= 10 and y1 >= 20
    # with object_crops off, boxes and distractors are ignored: crops anywhere
    spread = torch.cat([training_crops(boxes, 32, (120, 160), gen, False, distractors) for _ in range(30)])
    assert spread[:, 1].max() - spread[:, 1].min() > 64


def test_load_matching_carries_every_weight_but_those_shaped_by_the_patch_sizes():
    from msgf import build_model

    def model(sizes, seed):
        torch.manual_seed(seed)
        return build_model("mobilenet_v3_small", 3, 64, sizes, 3, None, policy_head="spatial", classifier_hidden=32)

    source, target = model((48, 64), 0), model((64,), 1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    kept = load_matching(target, source)
    assert kept == ["policy.cell.weight_ih"]  # its input holds one-hots of the patch sizes
    theirs = source.state_dict()
    for name, value in target.state_dict().items():
        expected = before[name] if name in kept else theirs[name]
        assert torch.equal(value, expected), name


def test_object_seen_hand_example():
    # 100 x 200 image, two focus steps. Step 1: 50 px at (0, 0) -> x 0..50, y 0..50. Step 2:
    # 20 px at (1, 1) -> top 80, left 180 -> x 180..200, y 80..100.
    trace = [torch.zeros(4, 2), torch.ones(4, 2)]
    sizes = torch.tensor([[50, 20]] * 4)
    boxes = [
        torch.tensor([[40.0, 40.0, 58.0, 58.0]]),  # centre (49, 49): seen at step 1, and stays seen
        torch.tensor([[40.0, 40.0, 62.0, 62.0]]),  # centre (51, 51): overlaps step 1's patch, but unseen
        torch.tensor([[190.0, 90.0, 200.0, 100.0], [0.0, 0.0, 9.0, 9.0]]),  # the first box counts: step 2
        torch.zeros((0, 4)),  # no box (EMPTY): nothing to see, counted seen throughout
    ]
    seen = object_seen(boxes, trace, sizes, (100, 200))
    assert seen.tolist() == [[False, True, True], [False, False, False], [False, False, True], [True, True, True]]


def test_an_episodes_trace_holds_the_locations_its_patches_were_cut_at():
    from msgf.models.config import GFConfig
    from msgf.models.gfnet import GFNet

    torch.manual_seed(0)
    model = GFNet(GFConfig(backbone="mobilenet_v3_small", num_classes=4, glance_size=32, patch_sizes=(32,), T=3,
                           classifier="fc", policy_head="spatial")).eval()
    images = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8)
    given = torch.rand(2, 2, 2)
    trace = []
    with torch.no_grad():
        model(images, 32, given, trace=trace)
        assert torch.equal(torch.stack(trace, 1), given)
        trace.clear()
        states = model(images, 32, None, trace=trace)
        proposal = model.propose(states[0], 32)  # pi's mean from the glance: the first patch's location
    assert len(trace) == 2 and torch.allclose(trace[0], proposal.mean)


def test_stage0_skips_the_training_images_when_every_crop_and_glance_comes_from_the_scene_set(tmp_path):
    from msgf.train.loop import RunOptions, Trainer
    from msgf.train.stages import EncoderTraining

    base = {"data.image_size": (96, 128), "data.train_samples": 16, "data.val_samples": 16,
            "data.test_samples": 16, "data.batch_size": 8}
    for scene_set, expect_images in (({"stage0.glance_samples": 16, "stage0.local_samples": 16}, False),
                                     ({"stage0.glance_samples": 0, "stage0.local_samples": 16}, True)):  # f_G: batch glances
        config = preset("smoke", glance_size=32, patch_sizes=(32, 48), **base, **scene_set)
        trainer = Trainer(config, RunOptions(out=tmp_path / str(expect_images), progress=False))
        try:
            batches = list(EncoderTraining(trainer).batches(0))
            assert len(batches) == 2
            assert all((batch["images"].numel() > 0) == expect_images for batch in batches)
        finally:
            trainer.close()


def test_stage0_local_batches_are_the_first_local_samples_windows_once_per_pass(tmp_path):
    from msgf.train.loop import RunOptions, Trainer
    from msgf.train.stages import EncoderTraining

    config = preset("smoke", glance_size=32, patch_sizes=(32, 48), **{
        "data.image_size": (96, 128), "data.train_samples": 16, "data.val_samples": 16, "data.test_samples": 16,
        "data.batch_size": 8, "stage0.glance_samples": 16, "stage0.local_samples": 24})
    trainer = Trainer(config, RunOptions(out=tmp_path, progress=False))
    try:
        stage0 = EncoderTraining(trainer)
        scenes = stage0._scene_set()  # max(glance_samples, local_samples) images, windows of 2 x 48 px
        assert len(scenes) == 24 and scenes.regions.shape == (24, 96, 96, 3)
        batches = stage0._local_batches(0)
        seen = []
        for _ in range(3):  # one pass over the 24 windows
            windows, labels, boxes = next(batches)
            assert windows.shape == (8, 96, 96, 3) and len(boxes) == 8
            for window, label in zip(windows, labels):
                index = next(i for i in range(len(scenes)) if torch.equal(scenes.regions[i], window))
                assert scenes.labels[index] == label
                seen.append(index)
        assert sorted(seen) == list(range(24))
    finally:
        trainer.close()


def test_local_samples_needs_object_crops_and_counts_are_not_negative():
    with pytest.raises(ValueError, match="object_crops"):
        preset("smoke", **{"stage0.local_samples": 8, "stage0.object_crops": False})
    with pytest.raises(ValueError, match="local_samples"):
        preset("smoke", **{"stage0.local_samples": -1})


def test_evaluate_steps_per_sample_matches_an_episode_run_by_hand():
    from msgf import build_model
    from msgf.train.metrics import evaluate_steps

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 3, 32, (32, 48), 3, None, policy_head="spatial",
                        classifier_hidden=16).eval()
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 64, 96, 3), generator=gen, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    batches = [{"images": images[:4], "labels": labels[:4], "boxes": [torch.zeros((0, 4))] * 4},
               {"images": images[4:], "labels": labels[4:], "boxes": [torch.zeros((0, 4))] * 2}]
    tally = evaluate_steps(model, batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(2),
                           autocast=__import__("contextlib").nullcontext, per_sample=True)
    for k, size in enumerate((32, 48)):
        # oracle: the policy's episode, step by step, on all six images at once
        with torch.no_grad():
            state = model.glance(images)
            expected = [state.logits.argmax(1) == labels]
            for _ in range(2):
                state = model.focus(state, images, model.propose(state, size).mean.float(), size)
                expected.append(state.logits.argmax(1) == labels)
        assert torch.equal(tally.per_sample[(size, "policy")], torch.stack(expected, 1))
        for s, source in enumerate(("policy", "random")):
            assert tally.per_sample[(size, source)].shape == (6, 3)
            assert tally.per_sample[(size, source)].double().sum(0).tolist() == tally.correct[k, s].tolist()


def test_train_command_pretrained_flags():
    from msgf.cli import build_parser
    from msgf.commands.train import config_from_args

    def config(*flags):
        return config_from_args(build_parser().parse_args(["train", "--preset", "smoke", *flags]))

    assert config().pretrained is None and config().weights is None
    assert config("--pretrained").pretrained == "DEFAULT"
    assert config("--pretrained", "IMAGENET1K_V1").pretrained == "IMAGENET1K_V1"
    assert config("--weights", "w.pt").weights == "w.pt"
    pretrained_preset = TrainConfig(pretrained="DEFAULT")
    assert preset("smoke", pretrained="DEFAULT").pretrained == pretrained_preset.pretrained
    with pytest.raises(ValueError, match="--from-scratch or --weights"):
        config("--pretrained", "--weights", "w.pt")
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(pretrained="DEFAULT", weights="w.pt")


def test_input_sizes_follow_their_patch_sizes():
    from msgf.cli import build_parser
    from msgf.commands.train import config_from_args

    def config(name, *flags):
        return config_from_args(build_parser().parse_args(["train", "--preset", name, *flags]))

    zoomed = config("cpu-demo")
    assert zoomed.patch_input_sizes and len(zoomed.patch_input_sizes) == len(zoomed.patch_sizes)
    # given unsorted, each input side stays with its patch size
    assert config("smoke", "--sizes", "48,32", "--input-sizes", "96,64").patch_input_sizes == (64, 96)
    # other patch sizes drop the preset's input sides, which belonged to its own sizes
    assert config("cpu-demo", "--sizes", "32,48,64").patch_input_sizes == ()
    assert TrainConfig.from_dict(zoomed.to_dict()) == zoomed
    with pytest.raises(ValueError, match="patch_input_sizes"):
        config("smoke", "--sizes", "32,48", "--input-sizes", "64")


def test_repeats_earlier_hand_example():
    from msgf.train.metrics import repeats_earlier

    patch = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    half = torch.tensor([[5.0, 0, 15, 10], [6, 0, 16, 10], [20, 20, 30, 30]])  # 50, 40, 0 shared pixels
    same = torch.tensor([[50.0, 50, 60, 60], [50, 50, 60, 60], [0, 0, 10, 10]])
    assert repeats_earlier(patch, []).tolist() == [False] * 3
    assert repeats_earlier(patch, [half]).tolist() == [True, False, False]
    assert repeats_earlier(patch, [half, same]).tolist() == [True, False, True]


def test_a_train_state_written_before_stages_kept_their_own_state_still_resumes():
    # train_state.ckpt files of earlier versions hold stage 0's locator as position["locator"]
    from msgf.train.state import Position

    locator = {"weight": torch.ones(2)}
    old = Position(stage_pos=0, epoch=1).to_plain()
    del old["stage_state"]
    position = Position.from_plain({**old, "locator": locator})
    assert position.stage_state is locator and position.epoch == 1
    assert Position.from_plain(position.to_plain()) == position


def test_unknown_stages_are_refused_before_anything_runs(tmp_path):
    from msgf.train import RunOptions, train

    with pytest.raises(ValueError, match="stages: expected stage numbers among"):
        train(preset("smoke"), RunOptions(out=tmp_path / "run", stages=(1, 4), progress=False))
    assert not (tmp_path / "run").exists()


def test_data_roles_settings_from_flags_and_their_checks(tmp_path):
    from pathlib import Path

    from msgf.cli import build_parser
    from msgf.commands.train import config_from_args
    from msgf.train.presets import DataConfig

    args = build_parser().parse_args(["train", "--preset", "smoke", "--data", "a.csv", "--val-data", "b.csv",
                                      "--test-data", "c", "--val-fraction", "0.2"])
    data = config_from_args(args).data
    assert (data.source, data.val_source, data.test_source, data.val_fraction) == ("a.csv", "b.csv", "c", 0.2)
    assert config_from_args(build_parser().parse_args(["train", "--preset", "smoke"])).data.val_fraction == 0.1
    assert DataConfig(source=Path("x.csv"), test_source=Path("t")).source == "x.csv"  # paths kept as str
    for bad, error, name in ((dict(val_fraction=0), ValueError, "data.val_fraction"),
                             (dict(val_fraction=1.0), ValueError, "data.val_fraction"),
                             (dict(val_source=3), TypeError, "data.val_source"),
                             (dict(layout=(None, "val", "test")), ValueError, "data.layout"),
                             (dict(layout=("train", "val")), ValueError, "data.layout")):
        with pytest.raises(error, match=name):
            DataConfig(**bad)
    config = preset("smoke", **{"data.val_source": "v.csv", "data.layout": ["train", None, "val"]})
    assert TrainConfig.from_dict(config.to_dict()) == config and config.data.layout == ("train", None, "val")


def test_a_file_for_two_roles_stops_the_run_before_it_writes_anything(tmp_path):
    from msgf.data.synth_export import write_synthsigns
    from msgf.train import RunOptions, train

    manifest = write_synthsigns(tmp_path, "val", 4, (64, 64), progress=False)
    with pytest.raises(ValueError, match=r"data.source \(--data\) and data.test_source \(--test-data\) name the same"):
        train(preset("smoke", **{"data.source": str(manifest), "data.test_source": str(manifest)}),
              RunOptions(out=tmp_path / "run", progress=False))
    assert not (tmp_path / "run").exists()


def test_a_train_state_from_before_the_data_roles_resumes_and_changed_data_does_not(tmp_path):
    import msgf
    from msgf.checkpoint import save_checkpoint
    from msgf.train.state import Position, load_state

    config = preset("smoke")
    model = msgf.build_model("mobilenet_v3_small", num_classes=4, glance_size=32, patch_sizes=[32, 48], T=3)
    old = config.to_dict()
    for name in ("val_source", "test_source", "val_fraction", "layout"):  # settings added since
        del old["data"][name]
    save_checkpoint(model, tmp_path / "state.ckpt",
                    train_state={"config": old, "stages": [0, 1, 2, 3], "position": Position(epoch=1).to_plain()})
    assert load_state(tmp_path / "state.ckpt", model, config, (0, 1, 2, 3)).epoch == 1
    splits = {"train": {"source": "a.csv", "sha256": "1"}, "val": None, "test": None}
    save_checkpoint(model, tmp_path / "state.ckpt",
                    train_state={"config": config.to_dict(), "stages": [0, 1, 2, 3], "splits": splits,
                                 "position": Position(epoch=1).to_plain()})
    assert load_state(tmp_path / "state.ckpt", model, config, (0, 1, 2, 3), splits).epoch == 1
    changed = {**splits, "train": {"source": "a.csv", "sha256": "2"}}
    with pytest.raises(ValueError, match="on other data"):
        load_state(tmp_path / "state.ckpt", model, config, (0, 1, 2, 3), changed)
