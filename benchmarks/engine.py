"""Budgeted inference speed: MS-GFNet with early exits against the static backbone.

Workload: N uint8 images (default 224x224, fixed-seed noise: speed does not depend on content,
and an untrained model is used, so accuracy is not measured here); ResNet-18 MS-GFNet with a
96 px glance, patches {96, 128}, T=3. Thresholds for each budget route the least confident
samples onward (see `routing_for_budget`), tuned on the model's own trajectories of these
images so the realised average MACs land close to each budget. Reported, best of
repeats (the machine is shared):

- images/s of `msgf.engine.predict` at each budget, batch 64, against the static torchvision
  backbone (with its classifier) on the full-resolution images, same batch size, same uint8
  input normalised by msgf.ops;
- the engine's own overhead at batch 64: wall time of `predict` outside the encoders,
  split into the classifier, the policy and the rest (glance resize, crops, grouping,
  threshold decisions, bookkeeping), as fractions of the encoder time (target: < 10%).

    python benchmarks/engine.py            # CPU, a few minutes on 2 cores
    python benchmarks/engine.py --quick    # smaller, for a smoke check
    python benchmarks/engine.py --device cuda --num-images 2048 --batch-size 256 --image-size 960

Writes benchmarks/results/engine.json and engine.md (engine-cuda.* with --device cuda). On a GPU
every timed region ends with a device synchronisation, and the overhead split synchronises in
its module hooks, so each part is charged the kernels it launched.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

import msgf
from msgf import ops
from msgf.engine import Thresholds, export_trajectories, predict
from threshold_search import Trajectories, evaluate, format_macs

RESULTS = Path(__file__).parent / "results"


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_seconds(runs: dict, repeats: int) -> dict:
    """Fastest of `repeats` timed runs of each callable, after one warm-up each (allocator,
    oneDNN primitives per batch shape). Rounds interleave the callables so that load from other
    processes on a shared machine hits all of them alike; the fastest run is the least disturbed."""
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def batches(images: torch.Tensor, size: int):
    return [images[i:i + size] for i in range(0, len(images), size)]


class ModuleTimer:
    """Wall time spent inside given modules, from forward pre/post hooks."""

    def __init__(self, modules: dict):
        self.seconds = dict.fromkeys(modules, 0.0)
        self._start = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._begin(n)))
            self._handles.append(module.register_forward_hook(lambda m, a, o, n=name: self._end(n)))

    def _begin(self, name):
        synchronize()
        self._start[name] = time.perf_counter()

    def _end(self, name):
        synchronize()
        self.seconds[name] += time.perf_counter() - self._start.pop(name)

    def remove(self):
        for handle in self._handles:
            handle.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--glance", type=int, default=96)
    parser.add_argument("--sizes", default="96,128")
    parser.add_argument("--T", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-fractions", default="0.1,0.3,0.5,0.8",
                        help="budgets between the glance cost (0) and the dearest path (1)")
    parser.add_argument("--quick", action="store_true", help="64 images, 1 repeat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the result files")
    parser.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.num_images, args.repeats = 64, 1
    load_before = os.getloadavg()[0]
    device = torch.device(args.device)
    if device.type == "cuda":
        # what users get by default on Ampere and later: TF32 convolutions
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(args.seed)
    sizes = [int(s) for s in args.sizes.split(",")]
    model = msgf.build_model(args.backbone, num_classes=10, glance_size=args.glance, patch_sizes=sizes,
                             T=args.T).eval().to(device)
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (args.num_images, args.image_size, args.image_size, 3), dtype=torch.uint8,
                           generator=gen).to(device)
    labels = torch.randint(0, 10, (args.num_images,), generator=gen).to(device)
    cfg = model.config

    # Static baseline: the torchvision model at full resolution, same input path.
    static = torchvision.models.get_model(args.backbone, weights=None, num_classes=10).eval().to(device)
    with FlopCounter() as counter:
        static(torch.zeros(1, 3, args.image_size, args.image_size, device=device))
    static_macs = counter.macs

    def run_static():
        with torch.inference_mode():
            for chunk in batches(images, args.batch_size):
                static(ops.glance(chunk, args.image_size, mean=cfg.mean, std=cfg.std))

    # Thresholds per budget from the model's own trajectories of these images.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.npz"
        start = time.perf_counter()
        summary = export_trajectories(model, list(zip(batches(images, args.batch_size),
                                                      batches(labels, args.batch_size))), path, progress=False)
        export_s = time.perf_counter() - start
        traj = Trajectories.load(path)
    lo, hi = float(traj.macs[0]), float(traj.macs.max())
    fractions = [float(f) for f in args.budget_fractions.split(",")]
    budgets = [lo + f * (hi - lo) for f in fractions]
    schedules = [routing_for_budget(traj, b) for b in budgets]

    def run_budgeted(thresholds):
        return [predict(model, chunk, thresholds) for chunk in batches(images, args.batch_size)]

    runs = {"static": run_static, **{i: (lambda th=th: run_budgeted(th)) for i, th in enumerate(schedules)}}
    best = best_seconds(runs, args.repeats)
    static_s = best["static"]
    rows = []
    for i, thresholds in enumerate(schedules):
        seconds = best[i]
        outs = run_budgeted(thresholds)
        macs = torch.cat([o.macs for o in outs]).double().mean().item()
        exits = torch.cat([o.exit_step for o in outs])
        rows.append({"budget": thresholds.budget, "avg_macs": macs, "ideal_speedup": static_macs / macs,
                     "images_per_s": args.num_images / seconds, "speedup_vs_static": static_s / seconds,
                     "exit_fraction": [float((exits == t).double().mean()) for t in range(1, cfg.T + 1)]})

    overhead = measure_overhead(model, images[:args.batch_size], schedules[len(schedules) // 2], args.repeats)
    report = {
        "device": args.device, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}, "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "crop_backend": ops.backends()[device.type],
        "workload": {"backbone": args.backbone, "num_images": args.num_images, "image_size": args.image_size,
                     "glance": args.glance, "sizes": sizes, "T": args.T, "batch_size": args.batch_size,
                     "repeats": args.repeats},
        "static": {"macs": static_macs, "images_per_s": args.num_images / static_s},
        "macs_table": {str(k): v for k, v in model.macs_table().items()},
        "export": {"seconds": export_s, "latency_s_per_image": summary.latency_s},
        "budgets": rows,
        "overhead_batch64": overhead,
    }
    stem = "engine" if device.type == "cpu" else f"engine-{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


def routing_for_budget(traj: Trajectories, budget: float) -> Thresholds:
    """Thresholds whose average MACs on `traj` come closest to `budget` from below.

    The model is untrained, so an accuracy search would have no reason to spend compute. For a
    speed benchmark we want routes that do: at every level, the fraction p of samples with the
    lowest confidence continues, split evenly between the sizes (least confident -> smallest
    threshold -> size 0). p is bisected on the exact MACs that threshold_search reports.
    """
    K = traj.num_sizes

    def thresholds(p: float) -> np.ndarray:
        rows = []
        for t in range(1, traj.T):
            first = sum(K ** (s - 1) for s in range(1, t))
            conf = traj.conf[:, first:first + K ** (t - 1)].ravel()
            rows.append([np.quantile(conf, p * (k + 1) / K) if p > 0 else -np.inf for k in range(K)])
        return np.array(rows)

    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if evaluate(traj, thresholds(mid))[1] <= budget else (lo, mid)
    eta = thresholds(lo)
    return Thresholds(eta, budget=budget, macs=evaluate(traj, eta)[1], sizes=tuple(int(s) for s in traj.sizes))


def measure_overhead(model, images: torch.Tensor, thresholds: Thresholds, repeats: int) -> dict:
    """Where `predict` spends its time on one batch: encoders, classifier, policy, the rest."""
    parts = {"encoders": [model.global_encoder, model.local_encoder], "classifier": [model.classifier],
             "policy": [model.policy]}
    totals = []
    shares = {name: [] for name in parts}
    for _ in range(repeats + 2):
        timers = {name: ModuleTimer({str(i): m for i, m in enumerate(mods)}) for name, mods in parts.items()}
        start = time.perf_counter()
        predict(model, images, thresholds)
        totals.append(time.perf_counter() - start)
        for name, timer in timers.items():
            shares[name].append(sum(timer.seconds.values()))
            timer.remove()
    # Drop two warm-up runs (oneDNN builds primitives for each new batch shape), then medians.
    total = statistics.median(totals[2:])
    seconds = {name: statistics.median(v[2:]) for name, v in shares.items()}
    rest = total - sum(seconds.values())
    encoders = seconds["encoders"]
    return {"budget": thresholds.budget, "total_s": total, "encoders_s": encoders,
            "classifier_s": seconds["classifier"], "policy_s": seconds["policy"], "rest_s": rest,
            "policy_over_encoders": seconds["policy"] / encoders, "rest_over_encoders": rest / encoders,
            "classifier_over_encoders": seconds["classifier"] / encoders,
            "engine_overhead_over_encoders": (seconds["policy"] + rest) / encoders}


class FlopCounter:
    def __enter__(self):
        from torch.utils.flop_counter import FlopCounterMode

        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        self.macs = self._mode.get_total_flops() // 2


def markdown(r: dict) -> str:
    w = r["workload"]
    lines = [
        "# Engine benchmark: budgeted inference vs static backbone",
        "",
        (f"GPU {r['gpu']}, " if r.get("gpu") else "CPU, ") +
        f"{r['threads']} CPU thread{'s' if r['threads'] > 1 else ''} (1-min load average {r['load_average_1min']['before']:.1f} before, "
        f"{r['load_average_1min']['after']:.1f} after: the machine is shared), torch {r['torch']}, "
        f"crop op {r['crop_backend']}. "
        f"{w['num_images']} uint8 images {w['image_size']}x{w['image_size']}, {w['backbone']} MS-GFNet "
        f"(glance {w['glance']}, patches {w['sizes']}, T={w['T']}), batch {w['batch_size']}, "
        f"best of {w['repeats']} runs. Untrained weights: speed only. Thresholds route the least "
        "confident samples onward (split evenly over the sizes), their share bisected to meet each "
        "budget on the model's own trajectories of these images.",
        "",
        f"Static {w['backbone']} at {w['image_size']} px: {format_macs(r['static']['macs'])} MACs, "
        f"{r['static']['images_per_s']:.1f} images/s.",
        "",
        "| budget | avg MACs | images/s | speed-up vs static | MACs ratio (ideal speed-up) | exits per step |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["budgets"]:
        exits = " / ".join(f"{f:.2f}" for f in row["exit_fraction"])
        lines.append(f"| {format_macs(row['budget'])} | {format_macs(row['avg_macs'])} | {row['images_per_s']:.1f} "
                     f"| {row['speedup_vs_static']:.2f}x | {row['ideal_speedup']:.2f}x | {exits} |")
    o = r["overhead_batch64"]
    lines += [
        "",
        f"Time inside `predict` at batch {w['batch_size']} (budget {format_macs(o['budget'])}), "
        f"relative to encoder time ({o['encoders_s'] * 1e3:.1f} ms):",
        "",
        f"- policy: {100 * o['policy_over_encoders']:.2f}%",
        f"- rest of the engine (glance resize, crops, grouping, exit decisions): {100 * o['rest_over_encoders']:.2f}%",
        f"- **engine overhead (policy + rest): {100 * o['engine_overhead_over_encoders']:.2f}%** (target < 10%)",
        f"- classifier f_C (part of the model, not the engine): {100 * o['classifier_over_encoders']:.2f}%",
        "",
        "Trajectory export latency per image: " + ", ".join(
            f"{k}: {v * 1e3:.2f} ms" for k, v in r["export"]["latency_s_per_image"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
