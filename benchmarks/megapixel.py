"""Peak memory of classifying tiled RGB TIFFs of growing size with msgf.Predictor.predict_regions.

For each side (default 5000, 10000, 20000 px; 20000 is 1.2 GB raw) and each layout (pyramidal,
flat) a JPEG-tiled TIFF is written tile by tile (benchmarks/regions.py's writer), then
classified in a fresh interpreter that reports its own peak RSS (getrusage ru_maxrss):
  baseline  peak after `import torch`, msgf and loading the checkpoint, before any image
  peak      peak after classifying the image
  steady    RSS after a first forward pass on a small in-memory image, just before the TIFF
  image peak  the kernel's peak RSS (VmHWM, reset at `steady`) while opening and classifying it
Every focus step is forced to the largest patch, so the run reads the most it can. The model
is untrained (memory and routing do not depend on the weights). Writes
benchmarks/results/megapixel.{json,md}.

    python benchmarks/megapixel.py --workdir /tmp/msgf_megapixel
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import regions as regions_benchmark  # noqa: E402  (the tile-by-tile TIFF writer)

LIMIT_BYTES = 1 << 30
MODELS = {  # name -> build_model arguments: the CPU-demo backbone and a heavier one
    "mobilenet_v3_small": dict(backbone="mobilenet_v3_small", glance_size=96, patch_sizes=[96, 128, 160], T=4),
    "resnet18": dict(backbone="resnet18", glance_size=96, patch_sizes=[96, 128, 160], T=4),
}


def make_checkpoint(name: str, path: Path) -> None:
    import torch

    import msgf
    from msgf.engine import Thresholds

    torch.manual_seed(0)
    model = msgf.build_model(num_classes=10, **MODELS[name]).eval()
    steps, sizes = model.config.T - 1, len(model.config.patch_sizes)
    # Only the largest size's threshold (inf) is >= any confidence: every step, largest patch.
    model.exit_thresholds = [Thresholds([[-np.inf] * (sizes - 1) + [np.inf]] * steps, budget=1.0)]
    msgf.save_checkpoint(model, path)


def _status_bytes(key: str) -> int:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status[key].split()[0]) * 1024


def classify(ckpt: str, image: str) -> dict:
    import torch

    import msgf
    from msgf.data.regions import open_image

    torch.set_num_threads(1)
    predictor = msgf.Predictor(ckpt)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # A first forward pass pages in library code (tens of MB); pay it before the image.
    predictor.predict([np.zeros((256, 256, 3), np.uint8)])
    steady = _status_bytes("VmRSS")
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # Loading the weights peaks above what the process then holds, and that transient would
    # hide the image's cost: reset the kernel's peak (VmHWM, and with it ru_maxrss; Linux >= 4.0).
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    reader = open_image(image)
    (result,) = predictor.predict_regions([reader])
    seconds = time.perf_counter() - start
    # what the process holds at the end, split into private memory and pages of mapped files
    # (mostly torch's shared libraries: shared between processes, dropped by the kernel first)
    image_peak = _status_bytes("VmHWM")
    return {"peak_rss_bytes": max(load_peak, image_peak), "baseline_rss_bytes": baseline,
            "steady_rss_bytes": steady,
            "image_peak_rss_bytes": image_peak,
            "end_anon_bytes": _status_bytes("RssAnon"), "end_file_bytes": _status_bytes("RssFile"),
            "classify_s": round(seconds, 2), "exit_step": result.exit_step,
            "patches": [list(p.box) for p in result.patches],
            "glance_level": reader.glance_level(96, 96), "macs": result.macs}


def child(argv: list[str]) -> dict:
    """Run one step in a fresh interpreter and return its result with its peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--child", *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--layouts", nargs="+", default=["pyramid", "flat"], choices=["pyramid", "flat"])
    parser.add_argument("--workdir", default="/tmp/msgf_megapixel")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *rest = args.child
        if step == "checkpoint":
            make_checkpoint(rest[0], Path(rest[1]))
            result = {}
        elif step == "classify":
            result = classify(*rest)
        else:
            result = regions_benchmark.write(rest[0], int(rest[1]), step == "write-pyramid")
        result.setdefault("peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        print(json.dumps(result))
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpts = {name: str(work / f"{name}.pt") for name in args.models}
    for name, path in ckpts.items():
        child(["checkpoint", name, path])
    runs = []
    for side in args.sides:
        for layout in args.layouts:
            image = str(work / f"{layout}_{side}.tif")
            start = time.perf_counter()
            written = child([f"write-{layout}", image, str(side)])
            write_s = round(time.perf_counter() - start, 1)
            for name, ckpt in ckpts.items():
                run = {"side": side, "layout": layout, "model": name, "raw_bytes": side * side * 3,
                       "file_bytes": written["file_bytes"], "write_s": write_s, **child(["classify", ckpt, image])}
                runs.append(run)
                print(f"{side} {layout} {name}: peak {run['peak_rss_bytes'] / 2**20:.0f} MB, image peak "
                      f"{run['image_peak_rss_bytes'] / 2**20:.0f} MB "
                      f"(steady {run['steady_rss_bytes'] / 2**20:.0f} MB), {run['classify_s']} s", flush=True)
            Path(image).unlink()
    # "does not grow with the image size": per model and layout, across the sides
    spread = {f"{name} {layout}": max(picked) - min(picked) for name in ckpts for layout in args.layouts
              if (picked := [r["image_peak_rss_bytes"] for r in runs if (r["model"], r["layout"]) == (name, layout)])}
    results = {"limit_bytes": LIMIT_BYTES, "models": {n: MODELS[n] for n in ckpts}, "runs": runs,
               "image_peak_spread_bytes": spread,
               "under_limit": {n: all(r["peak_rss_bytes"] < LIMIT_BYTES for r in runs if r["model"] == n)
                               for n in ckpts}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "megapixel.json").write_text(json.dumps(results, indent=2) + "\n")
    mb = lambda v: f"{v / 2**20:.0f}"  # noqa: E731
    lines = ["# megapixel: classifying JPEG-tiled RGB TIFFs with Predictor.predict_regions", "",
             "Fresh interpreter per run, 1 torch thread; every focus step forced to the largest patch "
             "(160 px, T=4). MB = MiB. Peak = ru_maxrss of the whole run (includes loading the weights); "
             "load = peak after importing torch/msgf and loading the checkpoint; steady = RSS just before "
             "the image; image peak = peak RSS while opening and classifying the image (VmHWM reset at "
             "steady); anon / file = private memory / mapped-file pages (mostly torch's libraries) at the end.", "",
             "| side | raw GB | layout | model | peak | load | steady | image peak | image peak - steady "
             "| anon / file | classify s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['side']} | {r['raw_bytes'] / 1e9:.2f} | {r['layout']} | {r['model']} | "
                     f"{mb(r['peak_rss_bytes'])} | {mb(r['baseline_rss_bytes'])} | {mb(r['steady_rss_bytes'])} | "
                     f"{mb(r['image_peak_rss_bytes'])} | {mb(r['image_peak_rss_bytes'] - r['steady_rss_bytes'])} | "
                     f"{mb(r['end_anon_bytes'])} / {mb(r['end_file_bytes'])} | {r['classify_s']} |")
    lines += ["", f"Image peak across sides {args.sides} (max - min): "
              + ", ".join(f"{n} {mb(g)} MB" for n, g in spread.items()) + ".",
              f"Whole-run peak under {mb(LIMIT_BYTES)} MB in every run: "
              + ", ".join(f"{n} {ok}" for n, ok in results["under_limit"].items()) + "."]
    (out / "megapixel.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
