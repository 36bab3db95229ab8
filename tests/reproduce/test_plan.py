"""The presets are the training presets with overrides, never copies of their stages."""
import pytest

from msgf.reproduce import plan as plans
from msgf.train import presets


def _without(config, *keys):
    values = config.to_dict()
    for key in keys:
        values.pop(key)
    return values


@pytest.mark.parametrize("name, train_preset", [("tiny", "smoke"), ("cpu", "cpu-demo"),
                                                ("cpu-scratch", "cpu-demo-scratch")])
def test_runs_derive_from_the_training_preset(name, train_preset):
    plan = plans.plan(name, seed=3)
    # the preset as it is, but for the seed and, where the report reads every stage's test
    # numbers, test_stages
    assert plan.overrides["seed"] == 3 and set(plan.overrides) <= {"seed", "test_stages"}
    base = presets.preset(train_preset, **plan.overrides)
    assert plan.base_config() == base
    runs = {r.name: r for r in plan.gfnet_runs()}
    equal = ["ms-equal-presentation"] if plan.equal_presentation else []
    # the reward ablation: stage II again from MS-GFNet's stage I with each reward; where the
    # preset's stage II trains nothing, both rewards train it for REWARD_EPOCHS, keeping the last
    rewards = ["ms-increments"] if base.stage2.epochs else ["ms-contrastive", "ms-increments"]
    assert list(runs) == ["ms", *(f"fixed-{s}" for s in base.patch_sizes), *rewards, *equal]
    assert plan.reward_pair() == ("ms" if base.stage2.epochs else "ms-contrastive", "ms-increments")
    for size in base.patch_sizes:
        fixed = runs[f"fixed-{size}"].config()
        assert fixed.patch_sizes == (size,)
        assert _without(fixed, "patch_sizes", "patch_input_sizes") == _without(base, "patch_sizes", "patch_input_sizes")
        # f_L reads the fixed size at MS-GFNet's side for it (its stage-0 weights learnt that)
        inputs = base.patch_input_sizes or base.patch_sizes
        assert fixed.patch_input_sizes == (inputs[base.patch_sizes.index(size)],)
        # stages I-III from MS-GFNet's stage-0 backbone, which therefore trains first
        assert runs[f"fixed-{size}"].stages == (1, 2, 3) and runs[f"fixed-{size}"].init == ("ms", "stage0.ckpt")
    assert runs["ms"].config() == base
    assert base.stage2.reward == "contrastive"
    for name in rewards:
        ablation = runs[name].config()
        assert ablation.stage2.reward == name.removeprefix("ms-")
        assert ablation.stage2.epochs == (base.stage2.epochs or plans.REWARD_EPOCHS)
        assert ablation.keep_incoming_weights == (base.keep_incoming_weights if base.stage2.epochs else False)
        assert runs[name].stages == (2,) and runs[name].init == ("ms", "stage1.ckpt")
    if equal:
        # as many patches of each size as a fixed-size run sees: the epochs of every stage that
        # draws a size per step, times the number of sizes
        presented = runs["ms-equal-presentation"]
        assert presented.stages == (1, 2, 3) and presented.init == ("ms", "stage0.ckpt")
        n = len(base.patch_sizes)
        for k in (1, 2, 3):
            assert getattr(presented.config(), f"stage{k}").epochs == getattr(base, f"stage{k}").epochs * n
        assert _without(presented.config(), "stage1", "stage2", "stage3") == _without(base, "stage1", "stage2",
                                                                                        "stage3")


def test_the_cpu_plan_starts_every_model_from_imagenet_through_ms_gfnets_stage_0():
    plan = plans.plan("cpu")
    assert plan.base_config().pretrained == "DEFAULT" and plan.equal_presentation
    assert all(s.kind == "pooled" for s in plan.static)
    assert all(r.init == ("ms", "stage0.ckpt") for r in plan.gfnet_runs() if r.name.startswith("fixed-"))
    assert plans.plan("cpu-scratch").base_config().pretrained is None


@pytest.mark.parametrize("name", plans.PRESETS)
def test_static_sizes_keep_the_aspect_and_reach_the_largest_that_fits(name):
    plan = plans.plan(name)
    height, width = plan.base_config().data.image_size
    sizes = [s.size for s in plan.static]
    assert len(sizes) >= 3 and plan.num_budgets >= 6
    assert all(h * width == w * height for h, w in sizes)
    # full resolution, or the report says why the largest is smaller
    assert max(sizes) == (height, width) or any("the largest that fits the time budget" in n for n in plan.notes)
    assert max(sizes)[0] * 2 >= height


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="preset"):
        plans.plan("huge")
    with pytest.raises(ValueError, match="seed"):
        plans.plan("tiny", seed=-1)


def test_tiny_reports_into_the_workdir_and_cpu_into_docs():
    assert plans.plan("tiny").default_report_dir is None
    assert str(plans.plan("cpu").default_report_dir) == "docs/results"
    assert str(plans.plan("cpu-scratch").default_report_dir) == "docs/results/scratch"
