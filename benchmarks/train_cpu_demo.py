"""The cpu-demo evidence: what `make demo` trains and searches, measured on the test split.

`make demo`'s two commands and the error budget, timed separately here (each with
OMP_NUM_THREADS=2; on shared cores whose other process competes, use 1: a 2-thread run then
slowed down up to 20x):

- train: `msgf train --preset cpu-demo` (every stage the preset runs);
- search: `msgf search-thresholds` on the run's validation trajectories at the demo's budget,
  scored on the test trajectories;
- errors: `msgf error-budget` of the final model on the test scenes, per patch size and at the
  searched thresholds (not part of make demo).

With --increments, stage II again from the run's stage1.ckpt with the "increments" reward.

Writes benchmarks/results/train_cpu_demo.{json,md}: the thresholds' accuracy and MACs at the
budget; accuracy per step, the policy's hit rate and repeat rate against random locations per
stage; pi's paired gain over random locations on the same scenes; and how well f_L (with its
stage-0 head FC_2) reads a sign when a patch is centred on it: roughly what a patch on the
sign can be worth to any policy.

    python benchmarks/train_cpu_demo.py                 # train and search (about what make demo does)
    python benchmarks/train_cpu_demo.py --summarise     # only re-read finished runs
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUDGET = "650M"  # as the Makefile's DEMO_BUDGET


def run(command: list[str], log: Path, threads: int) -> float:
    started = time.time()
    with open(log, "w") as out:
        subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", default=DEMO_BUDGET, help=f"MACs budget (default: {DEMO_BUDGET})")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the runs (default: 2)")
    parser.add_argument("--increments", action="store_true", help="also stage II with the increments reward")
    parser.add_argument("--summarise", action="store_true", help="only summarise finished runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_cpu_demo")
    args = parser.parse_args()
    base_dir, increments_dir = args.runs / "cpu_demo", args.runs / "cpu_demo_increments"
    msgf = [sys.executable, "-m", "msgf"]
    train = ["train", "--preset", "cpu-demo", "--seed", str(args.seed), "--no-progress"]
    commands = {
        "train": train + ["--out", str(base_dir)],
        "search": ["search-thresholds", "--trajectories", str(base_dir / "val_trajectories.npz"),
                   "--test", str(base_dir / "test_trajectories.npz"), "--budget", args.budget,
                   "--plot", str(base_dir / "accuracy_vs_macs.png"), "--out", str(base_dir / "thresholds.json")],
        "errors": ["error-budget", str(base_dir / "model.ckpt"), "--split", "test", "--num-samples", "500",
                   "--thresholds", str(base_dir / "thresholds.json"), "--budget", args.budget,
                   "--out", str(base_dir / "model.errors.json"), "--no-progress"],
    }
    if args.increments:
        commands["increments"] = train + ["--reward", "increments", "--stages", "2", "--init",
                                          str(base_dir / "stage1.ckpt"), "--out", str(increments_dir),
                                          "--no-trajectories"]
    seconds = {}
    if not args.summarise:
        args.runs.mkdir(parents=True, exist_ok=True)
        for name, command in commands.items():
            seconds[name] = run(msgf + command, args.runs / f"cpu_demo_{name}.log", args.threads)
    elif args.out.with_suffix(".json").exists():  # keep the wall times of the runs summarised again
        seconds = json.loads(args.out.with_suffix(".json").read_text()).get("wall_seconds") or {}
    summary = json.loads((base_dir / "summary.json").read_text())
    increments = json.loads((increments_dir / "summary.json").read_text()) if args.increments else None
    report = summarise(summary, increments, {k: "msgf " + " ".join(v).replace(str(ROOT) + "/", "")
                                             for k, v in commands.items()}, seconds)
    report["thresholds"] = json.loads((base_dir / "thresholds.json").read_text())["results"]
    report["errors"] = json.loads((base_dir / "model.errors.json").read_text())["budget"]
    report["reading"] = {name: reading(base_dir / f"{name}.ckpt", report["config"]) for name in ("stage0", "model")}
    report["paired"] = paired_gain(base_dir / "model.ckpt", report["config"], args.seed)
    report["scenes"] = scene_figure(base_dir / "model.ckpt", report["config"], report["thresholds"][0],
                                    args.out.parent / (args.out.name + "_scenes.png"))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def reading(checkpoint: Path, config: dict, batch: int = 50) -> dict:
    """Per patch size, on the test scenes: the share of signs f_L + FC_2 reads on a patch centred
    on the sign, and of EMPTY scenes it calls EMPTY on a patch centred on a decoy (every scene
    holds at least one red-ringed decoy or target), in [0, 1]."""
    import torch

    from msgf import load_checkpoint, ops
    from msgf.train.data import SynthSignsWithDistractors
    from msgf.train.sampling import centred_crops

    torch.set_flush_denormal(True)
    model = load_checkpoint(checkpoint).eval()
    data = config["data"]
    scenes = SynthSignsWithDistractors("test", seed=config["seed"], num_samples=data["test_samples"],
                                       image_size=data["image_size"])
    counts = {size: [0, 0, 0, 0] for size in model.config.patch_sizes}  # signs read, signs, EMPTY kept, EMPTY
    for start in range(0, len(scenes), batch):
        items = [scenes[i] for i in range(start, min(start + batch, len(scenes)))]
        images = torch.stack([item["image"] for item in items])
        labels = torch.tensor([item["label"] for item in items])
        objects = [item["boxes"] if len(item["boxes"]) else item["distractors"][:1] for item in items]
        for size in model.config.patch_sizes:
            crops = ops.crop_resize(images, centred_crops(objects, size, images.shape[1:3]),
                                    model.config.input_side(size), mean=model.config.mean,
                                    std=model.config.std).patches[0]
            with torch.no_grad():
                predicted = model.aux_heads[1](model.local_encoder(crops)[1]).argmax(1)
            sign = labels > 0
            counts[size][0] += int((predicted[sign] == labels[sign]).sum())
            counts[size][1] += int(sign.sum())
            counts[size][2] += int((predicted[~sign] == 0).sum())
            counts[size][3] += int((~sign).sum())
    return {str(size): {"signs_read": c[0] / max(c[1], 1), "empty_kept": c[2] / max(c[3], 1)}
            for size, c in counts.items()}


def scene_figure(checkpoint: Path, config: dict, searched: dict, path: Path, count: int = 6) -> list[dict]:
    """The final model at the searched thresholds on the first test scenes (half with a sign):
    its patches step by step, the annotated sign box dotted (msgf.reproduce.figures)."""
    import tempfile

    import torch

    from msgf import load_checkpoint
    from msgf.engine import Thresholds
    from msgf.reproduce import figures
    from msgf.train.data import collate, open_split
    from msgf.train.presets import TrainConfig

    model = load_checkpoint(checkpoint).eval()
    data = TrainConfig.from_dict(config).data
    test = open_split(data, data.test_split, seed=config["seed"], num_samples=4 * count, augment=False)
    chosen = figures.pick_scenes([test[i]["label"] for i in range(len(test))], count)
    batch = collate([test[i] for i in chosen])
    with tempfile.TemporaryDirectory() as panels, torch.no_grad():
        scenes = figures.scene_grid(path, model, Thresholds.from_search(searched), batch["images"], batch["labels"],
                                    list(model.config.class_names), Path(panels), boxes=batch["boxes"])
    return [{"test_index": i, **scene} for i, scene in zip(chosen, scenes)]


def paired_gain(checkpoint: Path, config: dict, seed: int) -> dict:
    """The final model's accuracy gain from pi's locations over uniformly random ones, paired on
    the same test scenes: per scene, the difference in correctness (mean over patch sizes) at
    each focus step, with its mean, standard error and a normal 95% interval (500 scenes)."""
    import torch

    from msgf import load_checkpoint
    from msgf.train.data import collate, open_split
    from msgf.train.metrics import evaluate_steps
    from msgf.train.presets import TrainConfig

    torch.set_flush_denormal(True)
    model = load_checkpoint(checkpoint)
    data = TrainConfig.from_dict(config).data
    test = open_split(data, data.test_split, seed=config["seed"], num_samples=data.test_samples, augment=False)
    batches = torch.utils.data.DataLoader(test, batch_size=50, collate_fn=collate)
    tally = evaluate_steps(model, batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                           autocast=contextlib.nullcontext, per_sample=True)
    sizes = model.config.patch_sizes
    result = {}
    for t in range(1, model.config.T):
        correct = {source: torch.stack([tally.per_sample[(s, source)][:, t] for s in sizes]).double()
                   for source in ("policy", "random")}
        gain = (correct["policy"] - correct["random"]).mean(0)
        mean, se = float(gain.mean()), float(gain.std() / len(gain) ** 0.5)
        result[f"t={t + 1}"] = {"gain": mean, "standard_error": se, "ci95": [mean - 1.96 * se, mean + 1.96 * se],
                                "scenes": len(gain)}
    return result


def summarise(summary: dict, increments: dict | None, commands: dict, seconds: dict) -> dict:
    results = summary["results"]
    report = {
        "commands": commands,
        "wall_seconds": seconds or None,
        "config": summary["config"],
        "macs_table": summary["macs_table"],
        "test": {stage: _compact(results[stage]) for stage in ("stage1", "stage2", "stage3") if stage in results},
        "history": summary["history"],
    }
    if increments is not None:
        report["stage2_by_reward"] = {"contrastive": _compact(results["stage2"]),
                                      "increments": _compact(increments["results"]["stage2"])}
    return report


def _compact(summary: dict) -> dict:
    keys = ("num_samples", "num_with_box", "accuracy_policy", "accuracy_random", "hit_rate_policy",
            "hit_rate_random", "repeat_rate_policy", "repeat_rate_random", "sizes")
    return {k: summary[k] for k in keys}


def _row(values) -> str:
    return " | ".join("-" if v is None else f"{100 * v:.1f}" for v in values)


def markdown(report: dict) -> str:
    cfg = report["config"]
    T = cfg["T"]
    weights = "ImageNet-pretrained (" + cfg["pretrained"] + ")" if cfg.get("pretrained") else "from scratch"
    lines = [
        "# Training: the cpu-demo run (built-in speed-limit scenes)",
        "",
        (f"{cfg['data']['image_size'][0]}x{cfg['data']['image_size'][1]} scenes, {cfg['backbone']} {weights}, "
         f"glance {cfg['glance_size']} px, patches {'/'.join(map(str, cfg['patch_sizes']))} px"
         + (f" (read at {'/'.join(map(str, cfg['patch_input_sizes']))} px)" if cfg.get("patch_input_sizes") else "")
         + f", T={T}; "
         f"{cfg['data']['train_samples']} training / {cfg['data']['val_samples']} validation / "
         f"{cfg['data']['test_samples']} test scenes (seed {cfg['seed']}). All numbers on the test split, in %."),
        "",
        "Commands:",
        "",
        *[f"    {name}: {command}" for name, command in report["commands"].items()],
        "",
    ]
    if report["wall_seconds"]:
        lines += ["Wall time (2 shared CPU cores, set-up not counted): " + ", ".join(
            f"{k} {v / 60:.1f} min" for k, v in report["wall_seconds"].items()), ""]
    if report.get("thresholds"):
        lines += ["## At the demo's budget (thresholds searched on validation, scored on test)", "",
                  "| budget | validation accuracy | validation MACs | test accuracy | test MACs |", "|---|---|---|---|---|"]
        for row in report["thresholds"]:
            val, test = row["validation"], row["test"]
            lines.append(f"| {row['budget'] / 1e6:.0f}M | {100 * val['accuracy']:.1f} | {val['macs'] / 1e6:.1f}M | "
                         f"{100 * test['accuracy']:.1f} | {test['macs'] / 1e6:.1f}M |")
        lines.append("")
    if report.get("errors"):
        from msgf.engine.error_budget import format_markdown

        lines += ["## Where the errors come from (msgf error-budget, the final model on the test scenes)", "",
                  "A sign scene is covered when the centre of its sign lies in one of the focus patches; read "
                  "when the step that first covered it predicts its class (f_C), or the patch alone does "
                  "(that step's FC_t). Each error of the final prediction falls in one bucket. \"If all "
                  "covered\" runs the uncovered scenes again with their last patch on the sign; \"if covered "
                  "read\" counts every covered sign as read (a bound).", "",
                  format_markdown(report["errors"]), ""]
    steps = " | ".join(f"t={t}" for t in range(1, T + 1))
    focus = " | ".join(f"t={t}" for t in range(2, T + 1))
    later = " | ".join(f"t={t}" for t in range(3, T + 1))
    notes = {"stage1": "pi has not met PPO yet: its locations come from the stage-0 locator (seed_policy)."
                       if cfg["stage0"].get("seed_policy") else "pi is untrained here.",
             "stage2": "pi after PPO (contrastive reward); f_G, f_L, f_C as after stage I."
                       + (" With keep_incoming_weights pi stays as stage I left it unless a PPO epoch scored "
                          "higher on validation (policy rows equal to stage I's: none did)."
                          if cfg.get("keep_incoming_weights") else ""),
             "stage3": "f_L and f_C fine-tuned on pi's locations (f_G frozen); the final model."
                       + (" With keep_incoming_weights it is stage II's model unless a stage-III epoch scored "
                          "higher on validation." if cfg.get("keep_incoming_weights") else "")}

    def row(entry, source):
        repeats = entry.get("repeat_rate_" + source, [None] * (T - 1))[1:]
        return (f"{_row(entry['accuracy_' + source])} | {_row(entry['hit_rate_' + source])}"
                + (f" | {_row(repeats)}" if T > 2 else ""))

    for stage, summary in report["test"].items():
        lines += [f"## After {stage} (best validation epoch)", "", notes[stage], "",
                  f"| patch | locations | accuracy {steps} | hit rate {focus} |"
                  + (f" repeat rate {later} |" if T > 2 else ""),
                  "|---|---|" + "---|" * T + "---|" * (T - 1) + "---|" * (T - 2)]
        for size, entry in summary["sizes"].items():
            for source in ("policy", "random"):
                lines.append(f"| {size} | {source} | {row(entry, source)} |")
        for source in ("policy", "random"):
            lines.append(f"| mean | {source} | {row(summary, source)} |")
        lines.append("")
    if report.get("stage2_by_reward"):
        lines += ["## Stage II by reward (same stage-I checkpoint; policy locations, mean over patch sizes)", "",
                  f"| reward | accuracy {steps} | hit rate {focus} |", "|---|" + "---|" * T + "---|" * (T - 1)]
        for reward, summary in report["stage2_by_reward"].items():
            lines.append(f"| {reward} | {_row(summary['accuracy_policy'])} | {_row(summary['hit_rate_policy'])} |")
        summary = report["stage2_by_reward"]["contrastive"]
        lines.append(f"| (random locations) | {_row(summary['accuracy_random'])} | "
                     f"{_row(summary['hit_rate_random'])} |")
    lines += ["", "MACs per step: " + ", ".join(f"{k}: {v / 1e6:.1f}M" for k, v in report["macs_table"].items()), ""]
    if report.get("paired"):
        lines += ["## pi against random locations, paired (final model, test scenes)", "",
                  "Per scene: correct with pi's locations minus correct with random ones (mean over patch sizes), "
                  "in points; a normal 95% interval over the scenes.", "",
                  "| step | gain | standard error | 95% interval | scenes |", "|---|---|---|---|---|"]
        for step, entry in report["paired"].items():
            low, high = entry["ci95"]
            lines.append(f"| {step} | {100 * entry['gain']:+.1f} | {100 * entry['standard_error']:.1f} | "
                         f"[{100 * low:+.1f}, {100 * high:+.1f}] | {entry['scenes']} |")
        lines.append("")
    if report.get("scenes"):
        lines += ["## Where the model looked (train_cpu_demo_scenes.png)", "",
                  "Test scenes at the budget's thresholds; the annotated sign dotted. Patch boxes as "
                  "(x0, y0, x1, y1) in pixels, in step order.", "",
                  "| test scene | label | prediction | exit step | MACs | patches |", "|---|---|---|---|---|---|"]
        for scene in report["scenes"]:
            patches = "; ".join("(" + ", ".join(f"{v:.0f}" for v in box) + ")" for box in scene["patches"])
            lines.append(f"| {scene['test_index']} | {scene['label']} | {scene['pred']} | {scene['exit_step']} | "
                         f"{scene['macs'] / 1e6:.1f}M | {patches} |")
        lines.append("")
    if report.get("reading"):
        lines += ["## How well f_L reads a sign it is shown (test scenes, FC_2 on f_L)", "",
                  "A patch centred on the sign (scenes with one) or on a decoy (EMPTY scenes): the share of "
                  "signs read correctly and of EMPTY scenes called EMPTY: roughly what a patch on the sign can "
                  "be worth (the final model classifies with f_C on every step's features).",
                  "", "| checkpoint | patch | signs read | EMPTY kept |", "|---|---|---|---|"]
        for name, sizes in report["reading"].items():
            for size, entry in sizes.items():
                lines.append(f"| {name} | {size} | {100 * entry['signs_read']:.1f} | "
                             f"{100 * entry['empty_kept']:.1f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
