"""The cpu-demo evidence for the training pipeline (issue 5), measured on the test split.

Three runs, all from one stage-I checkpoint (every run uses one thread, OMP_NUM_THREADS=1:
on shared cores a 2-thread run slowed down 20x whenever another process competed):

- base: all stages, stage II for 8 epochs with the contrastive reward;
- contrastive: stages II (24 epochs, the cpu-demo preset) and III from base's stage1.ckpt;
- increments: stage II for 8 epochs with the "increments" reward from the same checkpoint.

Writes benchmarks/results/train_cpu_demo.{json,md}: accuracy per step, the policy's hit rate
against random locations, and stage II accuracy with each reward, on the test split.

    python benchmarks/train_cpu_demo.py                 # the three runs (about 45 min)
    python benchmarks/train_cpu_demo.py --summarise     # only re-read finished runs

The tables are generated; the closing "What this shows" section of the committed .md was
written by hand from the runs' logs and the diagnostics it describes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], log: Path) -> float:
    started = time.time()
    with open(log, "w") as out:
        subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--summarise", action="store_true", help="only summarise finished runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_cpu_demo")
    args = parser.parse_args()
    runs = {"base": args.runs / "cpu_demo", "contrastive": args.runs / "cpu_demo_stage23",
            "increments": args.runs / "cpu_demo_increments"}
    stage1 = str(runs["base"] / "stage1.ckpt")
    base = [sys.executable, "-m", "msgf", "train", "--preset", "cpu-demo", "--seed", str(args.seed), "--no-progress"]
    commands = {
        "base": base + ["--epochs", "30,4,8,2", "--out", str(runs["base"])],
        "contrastive": base + ["--stages", "2,3", "--init", stage1, "--out", str(runs["contrastive"])],
        "increments": base + ["--reward", "increments", "--stages", "2", "--epochs", "0,0,8,0", "--init", stage1,
                              "--out", str(runs["increments"]), "--no-trajectories"],
    }
    seconds = {}
    if not args.summarise:
        for name, command in commands.items():
            seconds[name] = run(command, args.runs / f"{runs[name].name}.log")
    summaries = {name: json.loads((path / "summary.json").read_text()) for name, path in runs.items()}
    report = summarise(summaries, {k: "msgf " + " ".join(v[3:]).replace(str(ROOT) + "/", "")
                                   for k, v in commands.items()}, seconds)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def summarise(summaries: dict, commands: dict, seconds: dict) -> dict:
    base, contrastive = summaries["base"]["results"], summaries["contrastive"]["results"]
    return {
        "commands": commands,
        "wall_seconds": seconds or None,
        "config": summaries["contrastive"]["config"],
        "macs_table": summaries["contrastive"]["macs_table"],
        "test": {"stage1": _compact(base["stage1"]), "stage2 (24 epochs)": _compact(contrastive["stage2"]),
                 "stage3": _compact(contrastive["stage3"])},
        "stage2_by_reward": {"contrastive, 8 epochs": _compact(base["stage2"]),
                             "increments, 8 epochs": _compact(summaries["increments"]["results"]["stage2"]),
                             "contrastive, 24 epochs": _compact(contrastive["stage2"])},
        "history": {name: summary["history"] for name, summary in summaries.items()},
    }


def _compact(summary: dict) -> dict:
    keys = ("num_samples", "num_with_box", "accuracy_policy", "accuracy_random", "hit_rate_policy",
            "hit_rate_random", "sizes")
    return {k: summary[k] for k in keys}


def _row(values) -> str:
    return " | ".join("-" if v is None else f"{100 * v:.1f}" for v in values)


def markdown(report: dict) -> str:
    cfg = report["config"]
    T = cfg["T"]
    lines = [
        "# Training: the cpu-demo run (built-in speed-limit scenes)",
        "",
        f"{cfg['data']['image_size'][0]}x{cfg['data']['image_size'][1]} scenes, {cfg['backbone']}, glance "
        f"{cfg['glance_size']} px, patches {'/'.join(map(str, cfg['patch_sizes']))} px, T={T}; "
        f"{cfg['data']['train_samples']} training / {cfg['data']['val_samples']} validation / "
        f"{cfg['data']['test_samples']} test scenes (seed {cfg['seed']}). All numbers on the test split, in %.",
        "",
        "Commands:",
        "",
        *[f"    {name}: {command}" for name, command in report["commands"].items()],
        "",
    ]
    if report["wall_seconds"]:
        lines += ["Wall time (2 shared CPU cores): " + ", ".join(
            f"{k} {v / 60:.1f} min" for k, v in report["wall_seconds"].items()), ""]
    steps = " | ".join(f"t={t}" for t in range(1, T + 1))
    focus = " | ".join(f"t={t}" for t in range(2, T + 1))
    for stage, summary in report["test"].items():
        lines += [f"## After {stage} (best validation epoch)", "",
                  f"| patch | locations | accuracy {steps} | hit rate {focus} |",
                  "|---|---|" + "---|" * T + "---|" * (T - 1)]
        for size, entry in summary["sizes"].items():
            for source in ("policy", "random"):
                lines.append(f"| {size} | {source} | {_row(entry['accuracy_' + source])} | "
                             f"{_row(entry['hit_rate_' + source])} |")
        lines.append(f"| mean | policy | {_row(summary['accuracy_policy'])} | {_row(summary['hit_rate_policy'])} |")
        lines.append(f"| mean | random | {_row(summary['accuracy_random'])} | {_row(summary['hit_rate_random'])} |")
        lines.append("")
    lines += ["## Stage II by reward (same stage-I checkpoint; policy locations, mean over patch sizes)", "",
              f"| reward | accuracy {steps} | hit rate {focus} |", "|---|" + "---|" * T + "---|" * (T - 1)]
    for reward, summary in report["stage2_by_reward"].items():
        lines.append(f"| {reward} | {_row(summary['accuracy_policy'])} | {_row(summary['hit_rate_policy'])} |")
    summary = report["stage2_by_reward"]["contrastive, 8 epochs"]
    lines.append(f"| (random locations) | {_row(summary['accuracy_random'])} | {_row(summary['hit_rate_random'])} |")
    lines += ["", "MACs per step: " + ", ".join(f"{k}: {v / 1e6:.1f}M" for k, v in report["macs_table"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
