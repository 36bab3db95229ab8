"""Crop-and-resize speed: msgf.ops against the PyTorch ways of doing the same, and memcpy.

Workload (issue 2): N uint8 960x1280x3 images; one focus patch per image, sides mixed over
{96, 128, 160, 192} at random positions, normalised float32 output; and the glance, every whole
image to 96x96 with antialiasing. Reported side by side from one run, medians of repeats:

- focus: ours / a per-sample PyTorch loop (slice, permute, float, normalise) / roi_align on a
  float tensor converted beforehand (conversion not timed) / memcpy of the same bytes;
- glance: ours (uint8 in, normalised float out) / F.interpolate(antialias=True) on the same
  uint8 (no normalisation) / the same plus conversion and normalisation / memcpy of the
  same bytes.

    python benchmarks/crop.py                    # CPU, N=64
    python benchmarks/crop.py --device cuda      # GPU, N=256, GB/s against the device

Writes benchmarks/results/crop[-cuda].json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

import msgf
from msgf.ops import backends, crop_resize, focus_boxes, glance

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FOCUS_SIZES = (96, 128, 160, 192)
# Bandwidth of the lent accelerators (notes.md), for the GPU efficiency figure.
DEVICE_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12}


def median_seconds(fn, repeats: int, device: torch.device, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memcpy_seconds(total_bytes: int, repeats: int, device: torch.device) -> float:
    """A copy of total_bytes / 2 bytes reads and writes total_bytes: the physical bound.
    Buffers rotate through more memory than the last-level cache so every copy is cold."""
    half = max(total_bytes // 2, 1)
    copies = max(2, (256 << 20) // half + 1)
    pairs = [(torch.empty(half, dtype=torch.uint8, device=device).fill_(1),
              torch.zeros(half, dtype=torch.uint8, device=device)) for _ in range(copies)]
    state = {"i": 0}

    def one():
        src, dst = pairs[state["i"] % copies]
        state["i"] += 1
        dst.copy_(src)

    return median_seconds(one, repeats, device)


def focus_workload(images: torch.Tensor, generator: torch.Generator):
    n, height, width, _ = images.shape
    sizes = torch.tensor(FOCUS_SIZES)[torch.randint(len(FOCUS_SIZES), (n,), generator=generator)]
    locs = torch.rand((n, 2), generator=generator)
    boxes = focus_boxes(locs, sizes, (height, width)).to(images.device)
    return boxes, sizes.tolist()


def loop_focus(images, boxes, sizes, mean, std):
    out = []
    for (b, x0, y0, _, _), side in zip(boxes.tolist(), sizes):
        b, x0, y0 = int(b), int(x0), int(y0)
        patch = images[b, y0:y0 + side, x0:x0 + side].permute(2, 0, 1).float().div(255)
        out.append(patch.sub(mean).div(std))
    return out


def roi_align_focus(float_images, boxes, sizes):
    out = []
    for side in sorted(set(sizes)):
        rows = torch.tensor([i for i, s in enumerate(sizes) if s == side], device=boxes.device)
        out.append(roi_align(float_images, boxes[rows], (side, side), 1.0, 1, True))
    return out


def roi_align_seconds(images, boxes, sizes, repeats, device) -> float:
    """roi_align on a float copy made beforehand (not timed), freed on return."""
    float_images = images.permute(0, 3, 1, 2).float().div(255).contiguous()
    return median_seconds(lambda: roi_align_focus(float_images, boxes, sizes), repeats, device)


def run(args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    n = args.batch or (256 if device.type == "cuda" else 64)
    images = torch.randint(0, 256, (n, args.height, args.width, 3), dtype=torch.uint8, generator=generator).to(device)
    boxes, sizes = focus_workload(images, generator)
    mean = torch.tensor(MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(STD, device=device).view(3, 1, 1)

    focus_read = sum(3 * s * s for s in sizes)  # uint8 patch pixels
    focus_written = 4 * focus_read              # float32
    glance_read = images.numel()
    glance_written = 4 * n * 3 * args.glance * args.glance

    rows = {}
    rows["focus/ours"] = median_seconds(lambda: crop_resize(images, boxes, sizes, mean=MEAN, std=STD), args.repeats, device)
    rows["focus/pytorch loop"] = median_seconds(lambda: loop_focus(images, boxes, sizes, mean, std), args.repeats, device)
    rows["focus/roi_align (float input)"] = roi_align_seconds(images, boxes, sizes, args.repeats, device)
    rows["focus/memcpy bound"] = memcpy_seconds(focus_read + focus_written, args.repeats, device)

    nchw_u8 = images.permute(0, 3, 1, 2)  # channels_last uint8 view: torch's fast antialias path
    glance_repeats = max(3, args.repeats // 3)
    rows["glance/ours (uint8, normalised)"] = median_seconds(lambda: glance(images, args.glance, MEAN, STD),
                                                             glance_repeats, device)
    size = (args.glance, args.glance)
    if device.type == "cuda":
        # CUDA's antialiased resize takes no uint8: stock PyTorch converts to float first
        baseline = lambda: F.interpolate(nchw_u8.float(), size, mode="bilinear", antialias=True)  # noqa: E731
    else:
        baseline = lambda: F.interpolate(nchw_u8, size, mode="bilinear", antialias=True)  # noqa: E731
    rows["glance/F.interpolate uint8"] = median_seconds(baseline, glance_repeats, device)
    # The same output as ours by stock PyTorch: resize, then convert and normalise.
    rows["glance/F.interpolate uint8 + normalise"] = median_seconds(
        lambda: baseline().float().div_(255).sub_(mean).div_(std), glance_repeats, device)
    rows["glance/memcpy bound"] = memcpy_seconds(glance_read + glance_written, glance_repeats, device)

    traffic = {"focus": focus_read + focus_written, "glance": glance_read + glance_written}
    results = {
        "workload": {"device": str(device), "batch": n, "image": [args.height, args.width, 3], "focus_sizes": FOCUS_SIZES,
                     "glance": args.glance, "repeats": args.repeats, "threads": torch.get_num_threads(),
                     "bytes": traffic},
        "environment": {"torch": torch.__version__, "msgf": msgf.__version__, "backends": backends(),
                        "machine": platform.processor() or platform.machine(),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "median_seconds": rows,
        "gb_per_s": {k: traffic[k.split("/")[0]] / v / 1e9 for k, v in rows.items()},
        "ratios": {
            "focus: pytorch loop / ours (target >= 10)": rows["focus/pytorch loop"] / rows["focus/ours"],
            "focus: roi_align / ours": rows["focus/roi_align (float input)"] / rows["focus/ours"],
            "focus: ours / memcpy (target <= 2)": rows["focus/ours"] / rows["focus/memcpy bound"],
            "glance: F.interpolate uint8 / ours (target >= 1)":
                rows["glance/F.interpolate uint8"] / rows["glance/ours (uint8, normalised)"],
            "glance: F.interpolate uint8 + normalise / ours":
                rows["glance/F.interpolate uint8 + normalise"] / rows["glance/ours (uint8, normalised)"],
            "glance: ours / memcpy": rows["glance/ours (uint8, normalised)"] / rows["glance/memcpy bound"],
        },
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((bw for key, bw in DEVICE_BANDWIDTH.items() if key in name), None)
        if peak:
            results["ratios"]["focus: fraction of device bandwidth (target >= 0.5)"] = (
                traffic["focus"] / rows["focus/ours"] / peak)
    return results


def to_markdown(results: dict) -> str:
    w = results["workload"]
    lines = [f"# Crop-and-resize benchmark ({w['device']}, batch {w['batch']}, "
             f"{w['image'][0]}x{w['image'][1]} uint8, {w['threads']} threads)", "",
             "| operation | median ms | GB/s (read + written) |", "|---|---:|---:|"]
    for key, seconds in results["median_seconds"].items():
        lines.append(f"| {key} | {seconds * 1e3:.2f} | {results['gb_per_s'][key]:.2f} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in results["ratios"].items()]
    if w["device"].startswith("cuda"):
        lines += ["", "On CUDA the F.interpolate rows include the uint8 to float conversion: CUDA's antialiased "
                      "resize takes no uint8."]
    lines += ["", f"Backends: {results['environment']['backends']}; torch {results['environment']['torch']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="images per call (default 64 CPU, 256 CUDA)")
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--glance", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "crop" if args.device == "cpu" else "crop-cuda"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    markdown = to_markdown(results)
    (args.out / f"{stem}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
