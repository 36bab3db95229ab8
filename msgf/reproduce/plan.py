"""What `msgf reproduce` trains and measures, per preset, as data.

Every GFNet run's config is a training preset (msgf.train.presets) with a few overrides
(patch sizes, reward), never a copy of its stage hyperparameters. The static baselines take
their optimiser settings from the same config's stage 0 (the stage that trains a backbone
from scratch); only their input sizes and epoch counts are set here.

- `tiny`: the "smoke" preset (240x320 scenes, a few hundred of them): the whole pipeline in
  a few minutes on 2 cores, for CI-sized checks. Its numbers prove nothing about the method.
- `cpu`: the "cpu-demo-scratch" preset (960x1280 scenes, 1500 training scenes): a few hours on
  2 cores, the report committed as docs/results/synthsigns.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from msgf.train.presets import plain

PRESETS = ("tiny", "cpu")
MS_RUN = "ms"  # MS-GFNet, all patch sizes, contrastive reward (the preset as is)
INCREMENTS_RUN = "ms-increments"  # stage II again from ms/stage1.ckpt with the increments reward


@dataclass(frozen=True)
class GFNetRun:
    """One training run: WORKDIR/<name>/, from `train_preset` with `overrides`, running
    `stages`, optionally starting from `init` = (run name, checkpoint file) of another run."""

    name: str
    train_preset: str
    overrides: dict
    stages: tuple[int, ...] = (0, 1, 2, 3)
    init: tuple[str, str] | None = None

    def config(self):
        from msgf.train import presets

        return presets.preset(self.train_preset, **self.overrides)


@dataclass(frozen=True)
class StaticRun:
    """A static baseline: the GFNet's backbone on whole scenes resized to `size` (H, W)."""

    size: tuple[int, int]
    epochs: int

    @property
    def name(self) -> str:
        return f"static-{self.size[0]}x{self.size[1]}"


@dataclass(frozen=True)
class Plan:
    name: str
    train_preset: str
    overrides: dict  # applied to every run (e.g. the seed)
    static: tuple[StaticRun, ...]
    num_budgets: int = 8  # budgets of the accuracy-vs-MACs sweep (issue 7: at least 6)
    search_method: str = "ga"
    random_seed: int = 0  # seed of the random-location trajectories and the random exit criterion
    timing_repeats: int = 5  # timed passes over the timing images; the median is reported
    timing_images: int = 64
    scene_grid: int = 8  # test scenes drawn with their glance and focus boxes
    default_report_dir: Path | None = None  # None: the workdir
    notes: tuple[str, ...] = field(default_factory=tuple)

    def base_config(self):
        from msgf.train import presets

        return presets.preset(self.train_preset, **self.overrides)

    def gfnet_runs(self) -> list[GFNetRun]:
        """MS-GFNet with all the preset's patch sizes, one GFNet per fixed size, and MS-GFNet's
        stage II again with the increments reward from its own stage-I checkpoint.

        The fixed-size runs start from MS-GFNet's stage-0 backbone (stages I-III only), as the
        paper's models all start from the same ImageNet weights: the comparison is between the
        glance-and-focus stages, and stage 0, the longest stage on CPU, runs once."""
        sizes = self.base_config().patch_sizes
        runs = [GFNetRun(MS_RUN, self.train_preset, dict(self.overrides))]
        runs += [GFNetRun(f"fixed-{size}", self.train_preset, {**self.overrides, "patch_sizes": (size,)},
                          stages=(1, 2, 3), init=(MS_RUN, "stage0.ckpt")) for size in sizes]
        runs.append(GFNetRun(INCREMENTS_RUN, self.train_preset,
                             {**self.overrides, "stage2.reward": "increments", "export_trajectories": False},
                             stages=(2,), init=(MS_RUN, "stage1.ckpt")))
        return runs

    def to_dict(self) -> dict:
        return {"name": self.name, "train_preset": self.train_preset, "overrides": plain(self.overrides),
                "static": [{"name": s.name, "size": list(s.size), "epochs": s.epochs} for s in self.static],
                "num_budgets": self.num_budgets, "search_method": self.search_method,
                "random_seed": self.random_seed, "timing_repeats": self.timing_repeats,
                "timing_images": self.timing_images, "scene_grid": self.scene_grid,
                "gfnet_runs": [{"name": r.name, "overrides": plain(r.overrides), "stages": list(r.stages),
                                "init": None if r.init is None else "/".join(r.init)} for r in self.gfnet_runs()]}


def plan(name: str, *, seed: int = 0) -> Plan:
    """The plan of preset `name` ("tiny" or "cpu") with every run seeded by `seed`."""
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    if name == "tiny":
        # 240x320 scenes: the full resolution and two halvings
        return Plan("tiny", "smoke", {"seed": seed},
                    static=(StaticRun((60, 80), 4), StaticRun((120, 160), 3), StaticRun((240, 320), 2)),
                    timing_repeats=3, timing_images=32, scene_grid=4,
                    notes=("tiny preset: a smoke test of the pipeline; its numbers say nothing about the method",))
    # 960x1280 scenes: the static baselines stop at 480x640, the largest that fits the time
    # budget. Measured with --jobs 2 (one thread each, beside another training job),
    # mobilenet_v3_small trained on 960x1280 scenes at 1.1-1.4 scenes/s (18-22 min per epoch of
    # the 1500 training scenes; its validation accuracy was still the majority class's after 3
    # epochs) and at 480x640 on 3.9 scenes/s. Epochs shrink with the input; the report lists
    # them beside each accuracy.
    return Plan("cpu", "cpu-demo-scratch", {"seed": seed},
                static=(StaticRun((120, 160), 24), StaticRun((240, 320), 12), StaticRun((480, 640), 5)),
                default_report_dir=Path("docs/results"),
                notes=("static baselines up to 480x640, the largest that fits the time budget: at 960x1280 "
                       "training ran at 1.1-1.4 scenes/s beside another job (18-22 min per epoch), and after 3 "
                       "epochs its validation accuracy was still the majority class's",))

