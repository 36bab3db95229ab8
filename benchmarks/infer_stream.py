"""Reading ahead in `msgf infer`: sequential against worker threads, side by side.

Workload: N generated 960x1280 JPEGs (the built-in scenes, quality 90) and an untrained
MS-GFNet whose thresholds send about half the images past the glance (speed only; accuracy is
not measured): --model demo is the cpu-demo architecture (efficientnet_lite0, glance 256,
patches 64/128, T=4), --model smoke the smoke preset's (mobilenet_v3_small, glance 96,
patches 64/96, T=3), where decoding weighs more. Each configuration runs Predictor.predict_stream over the files, median of
--repeats, interleaved. Also timed alone: decoding the files (what the workers overlap) and the
model on already-decoded images (what they overlap it with).

    python benchmarks/infer_stream.py --model demo     # a few minutes on 2 cores
    python benchmarks/infer_stream.py --model smoke

Writes benchmarks/results/infer_stream_<model>[_<N>thread].json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import msgf
from msgf.data.decode import decode_image
from msgf.data.regions import ArrayImage
from msgf.engine import Thresholds, anytime

RESULTS = Path(__file__).parent / "results"
MODELS = {"demo": dict(backbone="efficientnet_lite0", glance_size=256, patch_sizes=[64, 128], T=4),
          "smoke": dict(backbone="mobilenet_v3_small", glance_size=96, patch_sizes=[64, 96], T=3)}


def write_scenes(root: Path, count: int) -> list[str]:
    from msgf.data.synthsigns import SynthSigns

    scenes = SynthSigns("test", num_samples=count, seed=0)
    paths = []
    for k in range(count):
        path = root / f"scene{k:04d}.jpg"
        Image.fromarray(np.asarray(scenes[k]["image"])).save(path, quality=90)
        paths.append(str(path))
    return paths


def half_past_the_glance(model, images: torch.Tensor) -> Thresholds:
    """Exit at the glance above its median confidence; later steps split evenly by size. (An
    untrained model may give every image the same confidence: then none exits early, and the
    exit fractions in the report say so.)"""
    out = anytime(model, images, model.config.patch_sizes[-1])
    rows = [[float(np.quantile(out.conf[:, t].numpy(), q)) for q in (0.5, 0.25)] for t in range(model.config.T - 1)]
    return Thresholds(rows, sizes=model.config.patch_sizes)


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(decode_image(self.paths[index]))


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="demo")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", default="0,1,2,4", help="worker counts to compare (0: sequential)")
    parser.add_argument("--processes", default="1,2",
                        help="DataLoader worker-process counts to compare with the threads (decoding only)")
    parser.add_argument("--model-threads", type=int, default=None,
                        help="torch threads for the model (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.model_threads:
        torch.set_num_threads(args.model_threads)
    torch.manual_seed(0)
    model = msgf.build_model(num_classes=4, **MODELS[args.model]).eval()
    worker_counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="msgf-stream-") as tmp:
        paths = write_scenes(Path(tmp), args.images)
        decoded = [decode_image(p) for p in paths[:32]]
        thresholds = half_past_the_glance(model, torch.from_numpy(np.stack(decoded)))
        predictor = msgf.Predictor(model, thresholds=thresholds)

        def run(workers: int):
            return lambda: list(predictor.predict_stream(paths, batch_size=args.batch, workers=workers))

        def run_processes(processes: int):
            # the alternative to threads: DataLoader worker processes decode, tensors cross in shared memory
            loader = torch.utils.data.DataLoader(_Decoded(paths), batch_size=args.batch, num_workers=processes,
                                                 collate_fn=list, prefetch_factor=2)
            return lambda: [predictor.predict([t.numpy() for t in batch]) for batch in loader]

        exits = [r.exit_step for _, r in predictor.predict_stream(paths, batch_size=args.batch, workers=2)]
        configs = {str(w): run(w) for w in worker_counts}
        configs.update({f"{p} process{'es' if p > 1 else ''}": run_processes(p)
                        for p in (int(v) for v in args.processes.split(",") if v)})
        runs = {name: [] for name in configs}
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits all alike
            for name, fn in configs.items():
                runs[name] += timed(fn, 1)
        decode_s = timed(lambda: [decode_image(p) for p in paths], args.repeats)
        arrays = [decode_image(p) for p in paths]
        compute_s = timed(lambda: [predictor.predict_regions([ArrayImage(a) for a in arrays[i:i + args.batch]])
                                   for i in range(0, len(arrays), args.batch)], args.repeats)
    median = {name: statistics.median(t) for name, t in runs.items()}
    sequential = median[str(worker_counts[0])]
    report = {
        "model": {"name": args.model, **MODELS[args.model]}, "images": args.images, "batch": args.batch, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "load_average_1min": os.getloadavg()[0],
        "exit_fraction": [exits.count(t) / len(exits) for t in range(1, model.config.T + 1)],
        "seconds": runs,
        "images_per_second": {name: args.images / s for name, s in median.items()},
        "speedup_vs_sequential": {name: sequential / s for name, s in median.items()},
        "decode_only_s": statistics.median(decode_s), "compute_only_s": statistics.median(compute_s),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"infer_stream_{args.model}" + (f"_{args.model_threads}thread" if args.model_threads else "")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    exits = " / ".join(f"{f:.2f}" for f in r["exit_fraction"])
    m = r["model"]
    lines = [
        f"# Reading ahead in msgf infer: sequential against worker threads ({m['name']} model)",
        "",
        f"{r['images']} generated 960x1280 JPEGs, untrained {m['backbone']} MS-GFNet (glance {m['glance_size']}, "
        f"patches {m['patch_sizes']}, T={m['T']}), batch {r['batch']}, exits per step {exits}; torch {r['torch']}, "
        f"{r['threads']} torch "
        f"threads on {r['cpus']} CPUs (1-min load {r['load_average_1min']:.1f}). Medians, runs interleaved.",
        "",
        "| reading ahead with | images/s | speed-up vs sequential |",
        "|---|---:|---:|",
    ]
    for name, rate in r["images_per_second"].items():
        label = "nothing (sequential)" if name == "0" else name if "process" in name else \
            f"{name} thread{'s' if name != '1' else ''}"
        lines.append(f"| {label} | {rate:.2f} | {r['speedup_vs_sequential'][name]:.2f}x |")
    decode, compute = r["decode_only_s"], r["compute_only_s"]
    lines += ["", f"Alone: decoding the files {decode:.1f} s, the model on decoded images {compute:.1f} s "
                  f"(decode is {100 * decode / (decode + compute):.0f}% of their sum; perfect overlap would give "
                  f"{(decode + compute) / max(decode, compute):.2f}x)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
