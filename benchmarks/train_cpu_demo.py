"""The cpu-demo evidence for the training pipeline (issue 5), measured on the test split.

Two runs (each with OMP_NUM_THREADS=1: on shared cores a 2-thread run slowed down 20x
whenever another process competed):

- base: the cpu-demo preset as `make demo` runs it, all stages, contrastive reward;
- increments: stage II again from base's stage1.ckpt with the "increments" reward, same epochs.

Writes benchmarks/results/train_cpu_demo.{json,md}: accuracy per step, the policy's hit rate
against random locations, and stage II accuracy with each reward, on the test split.

    python benchmarks/train_cpu_demo.py                 # the two runs
    python benchmarks/train_cpu_demo.py --summarise     # only re-read finished runs
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
    runs = {"base": args.runs / "cpu_demo", "increments": args.runs / "cpu_demo_increments"}
    stage1 = str(runs["base"] / "stage1.ckpt")
    base = [sys.executable, "-m", "msgf", "train", "--preset", "cpu-demo", "--seed", str(args.seed), "--no-progress"]
    commands = {
        "base": base + ["--out", str(runs["base"])],
        "increments": base + ["--reward", "increments", "--stages", "2", "--init", stage1,
                              "--out", str(runs["increments"]), "--no-trajectories"],
    }
    seconds = {}
    if not args.summarise:
        args.runs.mkdir(parents=True, exist_ok=True)
        for name, command in commands.items():
            seconds[name] = run(command, args.runs / f"{runs[name].name}.log")
    elif args.out.with_suffix(".json").exists():  # keep the wall times of the runs summarised again
        seconds = json.loads(args.out.with_suffix(".json").read_text()).get("wall_seconds") or {}
    summaries = {name: json.loads((path / "summary.json").read_text()) for name, path in runs.items()}
    report = summarise(summaries, {k: "msgf " + " ".join(v[3:]).replace(str(ROOT) + "/", "")
                                   for k, v in commands.items()}, seconds)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def summarise(summaries: dict, commands: dict, seconds: dict) -> dict:
    base = summaries["base"]["results"]
    return {
        "commands": commands,
        "wall_seconds": seconds or None,
        "config": summaries["base"]["config"],
        "macs_table": summaries["base"]["macs_table"],
        "test": {stage: _compact(base[stage]) for stage in ("stage1", "stage2", "stage3")},
        "stage2_by_reward": {"contrastive": _compact(base["stage2"]),
                             "increments": _compact(summaries["increments"]["results"]["stage2"])},
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
        (f"{cfg['data']['image_size'][0]}x{cfg['data']['image_size'][1]} scenes, {cfg['backbone']}, glance "
        f"{cfg['glance_size']} px, patches {'/'.join(map(str, cfg['patch_sizes']))} px, T={T}; "
        f"{cfg['data']['train_samples']} training / {cfg['data']['val_samples']} validation / "
        f"{cfg['data']['test_samples']} test scenes (seed {cfg['seed']}). All numbers on the test split, in %."),
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
    notes = {"stage1": "pi has not met PPO yet: its locations come from the stage-0 locator (seed_policy)."
                       if cfg["stage0"].get("seed_policy") else "pi is untrained here.",
             "stage2": "pi after PPO (contrastive reward); f_G, f_L, f_C as after stage I.",
             "stage3": "f_L and f_C fine-tuned on pi's locations (f_G frozen); the final model."}
    for stage, summary in report["test"].items():
        lines += [f"## After {stage} (best validation epoch)", "", notes[stage], "",
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
    summary = report["stage2_by_reward"]["contrastive"]
    lines.append(f"| (random locations) | {_row(summary['accuracy_random'])} | {_row(summary['hit_rate_random'])} |")
    lines += ["", "MACs per step: " + ", ".join(f"{k}: {v / 1e6:.1f}M" for k, v in report["macs_table"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
