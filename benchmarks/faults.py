"""Fault injection: SIGKILL training and the threshold search at random moments, then resume.

1. Training. A tiny run (the smoke preset on 64x96 scenes, every stage, trajectories
   exported) runs once uninterrupted. The same run is then started with `--resume`, killed
   with SIGKILL after a random delay, started again, and so on, at least --kills times,
   then left to finish. Its model, trajectories and per-epoch history must be bit-identical
   to the uninterrupted run's.
2. Threshold search. `msgf search-thresholds --ckpt` exports trajectories (cached beside the
   checkpoint) and writes thresholds into the checkpoint. It is killed at random moments,
   and after every kill the checkpoint must load, holding either no thresholds (the old
   state) or exactly those of an uninterrupted search (the new state); the run is then
   completed and checked once more.

    python benchmarks/faults.py                 # about 10 minutes on 2 cores
    python benchmarks/faults.py --kills 3       # a quicker smoke check

Writes benchmarks/results/faults.json and faults.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from msgf.checkpoint import CheckpointError, load_checkpoint, read_checkpoint

RESULTS = Path(__file__).parent / "results"
TINY = ["--preset", "smoke", "--image-size", "64x96", "--glance", "32", "--sizes", "32,48", "--T", "3",
        "--train-samples", "48", "--val-samples", "24", "--test-samples", "24", "--batch-size", "16",
        "--epochs", "4,3,3,3", "--no-progress"]
EPOCHS = 13
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "msgf", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_to_end(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = start(args)
    output, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"msgf {' '.join(args)} failed:\n{output}")
    return time.perf_counter() - started, output


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL `proc` after `delay` seconds; False if it finished first."""
    try:
        proc.communicate(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return True


def weights(path: Path) -> dict:
    return read_checkpoint(path)["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def same_npz(a: Path, b: Path) -> bool:
    with np.load(a) as fa, np.load(b) as fb:
        return set(fa.files) == set(fb.files) and all(np.array_equal(fa[k], fb[k]) for k in fa.files)


def completed_epochs(run: Path) -> int:
    """Epochs the run has saved (train_state.ckpt is replaced atomically: never half a file)."""
    try:
        return len(read_checkpoint(run / "train_state.ckpt")["extra"]["train_state"]["position"]["history"])
    except (FileNotFoundError, CheckpointError):
        return 0


def history(run: Path) -> list[dict]:
    rows = read_checkpoint(run / "train_state.ckpt")["extra"]["train_state"]["position"]["history"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def training_faults(work: Path, kills: int, rng: random.Random, log) -> dict:
    reference = work / "reference"
    seconds, _ = run_to_end(["train", *TINY, "--out", str(reference)])
    log(f"training: uninterrupted run {seconds:.1f} s")
    out = work / "killed"
    # Where each kill lands: after a random number of completed epochs (sorted, so the run
    # moves through every stage), plus a random part of an epoch. A resumed run restarts its
    # interrupted epoch, so kills placed by wall time alone would mostly hit start-up.
    epoch_seconds = seconds / (EPOCHS + 1)
    targets = sorted(rng.randrange(EPOCHS) for _ in range(kills))
    delays, placed = [], []
    for target in targets:
        proc = start(["train", *TINY, "--out", str(out), "--resume"])
        began = time.perf_counter()
        while proc.poll() is None and completed_epochs(out) < target:
            time.sleep(0.05)
        extra = rng.uniform(0.0, epoch_seconds)
        if not kill_after(proc, extra):
            raise SystemExit(f"the run finished before kill {len(delays) + 1}: give it more epochs (TINY)")
        delays.append(time.perf_counter() - began)
        placed.append({"after_epochs": completed_epochs(out), "target_epochs": target, "extra_s": round(extra, 2)})
        log(f"training: kill {len(delays)}/{kills}, {extra:.1f} s after epoch {target} was saved")
    final_seconds, output = run_to_end(["train", *TINY, "--out", str(out), "--resume"])
    checks = {
        "model.ckpt weights": same_weights(out / "model.ckpt", reference / "model.ckpt"),
        "every stage checkpoint's weights": all(same_weights(out / f"stage{s}.ckpt", reference / f"stage{s}.ckpt")
                                                for s in range(4)),
        "val trajectories": same_npz(out / "val_trajectories.npz", reference / "val_trajectories.npz"),
        "test trajectories": same_npz(out / "test_trajectories.npz", reference / "test_trajectories.npz"),
        "per-epoch history (losses, metrics)": history(out) == history(reference),
    }
    leftovers = sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))
    return {"uninterrupted_seconds": seconds, "kills": len(delays), "kill_delays_s": [round(d, 2) for d in delays],
            "kill_points": placed, "final_resume_seconds": final_seconds,
            "final_resume_said_resuming": "resuming from" in output, "identical": checks,
            "temporary_files_left": leftovers, "passed": all(checks.values())}


def search_faults(work: Path, kills: int, rng: random.Random, log) -> dict:
    """Kill `msgf search-thresholds --ckpt` and check the checkpoint after every kill."""
    source = work / "reference" / "model.ckpt"
    budget = str(int(load_checkpoint(source).path_macs([32])))
    search = ["search-thresholds", "--data", "synthsigns", "--image-size", "64x96", "--num-samples", "48",
              "--budget", budget, "--method", "geometric"]
    # the new state: an uninterrupted search on a fresh copy
    clean = work / "search-clean.ckpt"
    shutil.copy(source, clean)
    seconds, _ = run_to_end([*search, "--ckpt", str(clean)])
    new = [t.to_dict() for t in load_checkpoint(clean).exit_thresholds]
    log(f"search: uninterrupted run {seconds:.1f} s, {len(new)} threshold set(s)")

    target = work / "search-killed.ckpt"
    shutil.copy(source, target)
    states, delays, failures = [], [], []
    while len(delays) < kills:
        delay = rng.uniform(0.5, seconds)
        if not kill_after(start([*search, "--ckpt", str(target)]), delay):
            # finished: the new state; go back to the old one for more kills
            states.append("new (finished)")
            shutil.copy(source, target)
            for cached in target.parent.glob(f"{target.stem}.*.npz"):
                cached.unlink()
            continue
        delays.append(delay)
        try:
            stored = [t.to_dict() for t in load_checkpoint(target).exit_thresholds]
        except CheckpointError as err:
            failures.append(f"after a kill at {delay:.1f} s: {err}")
            shutil.copy(source, target)
            continue
        state = "old" if stored == [] else "new" if stored == new else "neither"
        if state == "neither":
            failures.append(f"after a kill at {delay:.1f} s: thresholds {stored}")
        states.append(state)
        if state != "old":  # back to the old state, so that the next kill can land in the write again
            shutil.copy(source, target)
        log(f"search: kill {len(delays)}/{kills} after {delay:.1f} s: checkpoint loads, {state} thresholds")
    run_to_end([*search, "--ckpt", str(target)])
    final = [t.to_dict() for t in load_checkpoint(target).exit_thresholds]
    return {"uninterrupted_seconds": seconds, "kills": len(delays), "kill_delays_s": [round(d, 2) for d in delays],
            "states_after_each_kill": states, "unloadable_or_mixed": failures,
            "final_equals_uninterrupted": final == new, "passed": not failures and final == new}


def markdown(report: dict) -> str:
    t, s = report["training"], report["search"]
    delays = t["kill_delays_s"]
    lines = [
        "# Fault injection: SIGKILL at random moments, then resume",
        "",
        f"`python benchmarks/faults.py --kills {report['kills']} --seed {report['seed']}`, torch {report['torch']}, "
        f"{report['wall_seconds'] / 60:.1f} min.",
        "",
        "## Training (smoke preset, 64x96 scenes, epochs 4,3,3,3, trajectories exported)",
        "",
        f"Uninterrupted: {t['uninterrupted_seconds']:.1f} s. Killed {t['kills']} times with SIGKILL, each "
        f"time a random part of an epoch after a random number of saved epochs (saved epochs at the kills: "
        f"{', '.join(str(p['after_epochs']) for p in t['kill_points'])} of 13; {min(delays):.1f}-{max(delays):.1f} s "
        f"into each process, median {statistics.median(delays):.1f} s), each time resumed with `--resume`, then "
        f"run to the end ({t['final_resume_seconds']:.1f} s).",
        "",
        "| compared with the uninterrupted run | bit-identical |",
        "|---|---|",
        *[f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in t["identical"].items()],
        "",
        f"Temporary files left behind: {len(t['temporary_files_left'])}.",
        "",
        "## Threshold search into the checkpoint (`msgf search-thresholds --ckpt`)",
        "",
        f"Uninterrupted: {s['uninterrupted_seconds']:.1f} s. Killed {s['kills']} times; after each kill the "
        f"checkpoint loaded with: " + ", ".join(f"{state}" for state in s["states_after_each_kill"]) + ".",
        "",
        f"- unloadable checkpoints or mixed thresholds: {len(s['unloadable_or_mixed'])}",
        f"- completed after the kills, equal to the uninterrupted search: {'yes' if s['final_equals_uninterrupted'] else '**no**'}",
        "",
        f"**{'PASS' if report['passed'] else 'FAIL'}**",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per part (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.kills < 1:
        raise SystemExit("--kills: expected at least 1")
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="msgf-faults-") as tmp:
        work = Path(tmp)
        training = training_faults(work, args.kills, rng, log=print)
        search = search_faults(work, args.kills, rng, log=print)
    report = {"kills": args.kills, "seed": args.seed, "torch": torch.__version__,
              "wall_seconds": time.perf_counter() - started, "training": training, "search": search,
              "passed": training["passed"] and search["passed"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "faults.md").write_text(markdown(report))
    print(markdown(report))
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
