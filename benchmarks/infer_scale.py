"""Inference at scale: `msgf infer` sequential, read-ahead, and sharded over 2 torchrun processes.

Workload (made in --workdir, reused when there): 2,000 generated 960x1280 JPEGs (the
built-in scenes) and 8 tiled pyramidal 20000x20000 TIFFs (JPEG tiles of 512 px, a scene
tiled 16x16 times); a checkpoint trained for 13 tiny epochs on the smoke preset, with
thresholds that send about half of the JPEGs past the glance. Each configuration is one
`msgf infer` process tree, timed, its peak RSS per process read from getrusage:

- sequential (`--workers 0`, torch's threads) against read-ahead (msgf infer's defaults, and 2
  reading + 2 model threads), on the JPEGs and the TIFFs;
- 2 processes under torchrun (1 thread each) against 1 process (1 reading + 1 model thread);
- peak RSS on 500 and on 2,000 JPEGs (it must not grow with the number of inputs).

    python benchmarks/infer_scale.py                       # about 15 minutes on 2 cores
    python benchmarks/infer_scale.py --jpegs 400 --tiffs 2 # smaller

Writes benchmarks/results/infer_scale.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
TRAIN = ["--preset", "smoke", "--image-size", "64x96", "--glance", "32", "--sizes", "32,48", "--T", "3",
         "--train-samples", "96", "--val-samples", "32", "--test-samples", "32", "--batch-size", "16",
         "--epochs", "4,3,3,3", "--no-progress", "--no-trajectories"]

# Runs a command and prints its wall time and the largest peak RSS among its processes.
MEASURE = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(json.loads(sys.argv[1]), env=json.loads(sys.argv[2]), stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, text=True)
print(json.dumps({"returncode": done.returncode, "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "stderr_tail": done.stderr[-2000:]}))
"""


def measure(command: list[str], threads: int | None) -> dict:
    """One run; threads None leaves the thread count to msgf infer (OMP_NUM_THREADS unset)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTHONWARNINGS="ignore", **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(command), json.dumps(env)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["returncode"] not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{result['stderr_tail']}")
    return result


def make_jpegs(root: Path, count: int) -> None:
    from PIL import Image
    from tqdm.auto import tqdm

    from msgf.data.synthsigns import SynthSigns

    root.mkdir(parents=True, exist_ok=True)
    scenes = SynthSigns("test", num_samples=count, seed=1)
    for k in tqdm(range(count), desc="JPEGs", unit="img"):
        path = root / f"scene{k:05d}.jpg"
        if not path.exists():
            Image.fromarray(np.asarray(scenes[k]["image"])).save(path, quality=90)


def make_tiffs(root: Path, count: int, side: int) -> None:
    import tifffile
    from PIL import Image

    from msgf.data.synthsigns import SynthSigns

    root.mkdir(parents=True, exist_ok=True)
    scenes = SynthSigns("test", num_samples=count, seed=2)
    for k in range(count):
        path = root / f"slide{k}.tif"
        if path.exists():
            continue
        scene = np.asarray(scenes[k]["image"])
        reps = (-(-side // scene.shape[0]), -(-side // scene.shape[1]), 1)
        pixels = np.ascontiguousarray(np.tile(scene, reps)[:side, :side])
        levels = [pixels]
        while min(levels[-1].shape[:2]) // 2 >= 512:
            levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(2)))
        options = dict(tile=(512, 512), photometric="rgb", compression="jpeg", compressionargs={"level": 90})
        partial = path.with_suffix(".partial")
        with tifffile.TiffWriter(partial, bigtiff=True) as writer:
            writer.write(levels[0], subifds=len(levels) - 1, **options)
            for level in levels[1:]:
                writer.write(level, subfiletype=1, **options)
        partial.rename(path)
        print(f"TIFF {k + 1}/{count}: {path.stat().st_size / 2**20:.0f} MB", flush=True)
        del pixels, levels


def make_checkpoint(work: Path, jpegs: Path) -> tuple[Path, Path]:
    """The tiny smoke-trained checkpoint and thresholds sending about half the JPEGs onward."""
    import torch

    from msgf.checkpoint import load_checkpoint
    from msgf.data.decode import decode_image
    from msgf.engine import Thresholds, anytime

    ckpt, thresholds = work / "smoke" / "model.ckpt", work / "thresholds.json"
    if not ckpt.exists():
        subprocess.run([sys.executable, "-m", "msgf", "train", *TRAIN, "--out", str(ckpt.parent)], check=True)
    if not thresholds.exists():
        model = load_checkpoint(ckpt)
        sample = sorted(jpegs.glob("*.jpg"))[:64]
        out = anytime(model, torch.from_numpy(np.stack([decode_image(p) for p in sample])), model.config.patch_sizes[0])
        rows = [[float(np.median(out.conf[:, t].numpy()))] * model.config.num_sizes for t in range(model.config.T - 1)]
        thresholds.write_text(Thresholds(rows, sizes=model.config.patch_sizes).to_json())
    return ckpt, thresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/infer_scale"))
    parser.add_argument("--jpegs", type=int, default=2000)
    parser.add_argument("--tiffs", type=int, default=8)
    parser.add_argument("--tiff-side", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    jpegs, tiffs, few = args.workdir / "jpegs", args.workdir / "tiffs", args.workdir / "jpegs-quarter"
    make_jpegs(jpegs, args.jpegs)
    make_tiffs(tiffs, args.tiffs, args.tiff_side)
    few.mkdir(parents=True, exist_ok=True)
    for path in sorted(jpegs.glob("*.jpg"))[:args.jpegs // 4]:
        if not (few / path.name).exists():
            os.link(path, few / path.name)
    ckpt, thresholds = make_checkpoint(args.workdir, jpegs)
    outputs = args.workdir / "outputs"
    outputs.mkdir(exist_ok=True)

    def infer(name: str, folder: Path, *extra: str, launcher=(), threads: int | None = None,
              repeats: int = 1) -> dict:
        out = outputs / f"{name}.jsonl"
        command = [*launcher, "-m", "msgf", "infer", str(ckpt), str(folder), "--thresholds", str(thresholds),
                   "--batch", str(args.batch), "--out", str(out), "--no-progress", *extra]
        tries = [measure([sys.executable, *command] if not launcher else command, threads) for _ in range(repeats)]
        result = sorted(tries, key=lambda t: t["seconds"])[len(tries) // 2]  # the median run
        summary = json.loads(out.read_text().splitlines()[-1])["summary"]
        result.update(images=summary["images"], failed=summary["failed"], runs=len(tries),
                      images_per_second=summary["images"] / result["seconds"])
        print(f"{name}: {result['images']} images in {result['seconds']:.1f} s "
              f"({result['images_per_second']:.1f}/s), peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
        return result

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    runs = {
        "jpegs, sequential (no read-ahead, torch's 2 threads: the path before read-ahead)":
            infer("jpeg-seq", jpegs, "--workers", "0", repeats=3),
        "jpegs, read-ahead (msgf infer's defaults here: 1 reading thread, 1 model thread)":
            infer("jpeg-ahead", jpegs, repeats=3),
        "jpegs, read-ahead, 2 reading threads + 2 model threads":
            infer("jpeg-ahead-2x2", jpegs, "--workers", "2", "--threads", "2", repeats=3),
        "jpegs, 2 torchrun processes x 1 model thread": infer("jpeg-torchrun", jpegs, launcher=torchrun, threads=1),
        "quarter of the jpegs, read-ahead (defaults)": infer("jpeg-quarter", few),
        "tiffs, sequential": infer("tiff-seq", tiffs, "--workers", "0", "--batch", "8"),
        "tiffs, read-ahead (defaults)": infer("tiff-ahead", tiffs, "--batch", "8"),
    }
    names = list(runs)
    def lines(name: str) -> list[str]:
        return (outputs / f"{name}.jsonl").read_text().splitlines()[:-1]

    # byte for byte where the model runs on the same number of threads (float sums split alike)
    identical = {"read-ahead 2 + 2 threads against sequential (2 model threads each)":
                 lines("jpeg-ahead-2x2") == lines("jpeg-seq"),
                 "2 torchrun processes against 1 process (1 model thread each)":
                 lines("jpeg-torchrun") == lines("jpeg-ahead")}
    rate = {name: run["images_per_second"] for name, run in runs.items()}
    ratios = {
        "jpegs: read-ahead (defaults) / sequential (target >= 1.6)": rate[names[1]] / rate[names[0]],
        "jpegs: read-ahead 2 + 2 threads / sequential": rate[names[2]] / rate[names[0]],
        "tiffs: read-ahead / sequential": rate[names[6]] / rate[names[5]],
        "jpegs: 2 torchrun processes / 1 process (2 threads in all, both)": rate[names[3]] / rate[names[1]],
        "peak RSS: 2,000 jpegs / 500 jpegs": runs[names[1]]["peak_rss_mb"] / runs[names[4]]["peak_rss_mb"],
    }
    report = {"workload": {"jpegs": args.jpegs, "tiffs": args.tiffs, "tiff_side": args.tiff_side, "batch": args.batch,
                           "checkpoint": "smoke preset, 64x96 scenes, 13 epochs", "cpus": os.cpu_count(),
                           "machine": platform.processor() or platform.machine()},
              "runs": runs, "ratios": ratios,
              "lines_identical": identical}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "infer_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "infer_scale.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    w = r["workload"]
    lines = [
        "# msgf infer at scale: sequential, read-ahead, 2 torchrun processes",
        "",
        f"{w['jpegs']} generated 960x1280 JPEGs and {w['tiffs']} tiled pyramidal {w['tiff_side']}x{w['tiff_side']} "
        f"TIFFs (JPEG tiles); checkpoint: {w['checkpoint']}; thresholds send about half the images past the "
        f"glance; batch {w['batch']}; {w['cpus']} CPUs. The median of 3 runs for the first three rows, one "
        f"for the others; wall time includes each process tree's start-up (`python benchmarks/infer_scale.py`).",
        "",
        "| run | images | seconds | images/s | peak RSS per process (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in r["runs"].items():
        lines.append(f"| {name} | {run['images']} | {run['seconds']:.1f} | {run['images_per_second']:.1f} | "
                     f"{run['peak_rss_mb']:.0f} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in r["ratios"].items()]
    lines += [""] + [f"- lines byte-identical, {name}: {'yes' if same else '**no**'}"
                     for name, same in r["lines_identical"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
