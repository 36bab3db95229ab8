"""Peak memory of glancing and cropping a 20000x20000 RGB tiled TIFF (1.2 GB raw).

Each step runs in its own subprocess and reports its own peak RSS (getrusage ru_maxrss), so
the numbers are not polluted by the parent or by each other:
  write-pyramid  writes a JPEG-tiled pyramidal TIFF (levels 1/2, 1/4, ... as SubIFDs) tile by tile
  write-flat     the same level 0 without a pyramid
  read           open_image, read_glance(96, 96), and focus regions of 96/128/160 px
  read+torch     the same after `import torch`, as in a training process (the CUDA build of
                 torch alone peaks at ~700 MB RSS on import; msgf.data.regions never imports it)
Writes benchmarks/results/regions.{json,md}. The limit to beat is 1 GB peak RSS per step.

    python benchmarks/regions.py --side 20000 --workdir /tmp/msgf_regions
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

TILE = 512
LIMIT_BYTES = 1 << 30


def _tile_pixels(y0: int, x0: int, scale: int) -> np.ndarray:
    """Procedural content of one tile of a level downsampled by `scale` (deterministic)."""
    ys = (y0 + np.arange(TILE)) * scale
    xs = (x0 + np.arange(TILE)) * scale
    r = (np.sin(ys[:, None] / 400.0) * 60 + 120 + (xs[None, :] // 97) % 40).astype(np.uint8)
    g = ((xs[None, :] // 13 + ys[:, None] // 17) % 200 + 30).astype(np.uint8)
    b = np.broadcast_to(((ys[:, None] * 3 + xs[None, :]) // 211 % 256).astype(np.uint8), (TILE, TILE))
    return np.stack([r, np.broadcast_to(g, (TILE, TILE)), b], axis=-1)


def _tiles(height: int, width: int, scale: int):
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            yield _tile_pixels(y, x, scale)


def write(path: str, side: int, pyramid: bool) -> dict:
    import tifffile

    levels = []
    size = side
    while pyramid and size // 2 >= 512:
        size //= 2
        levels.append(size)
    options = dict(tile=(TILE, TILE), photometric="rgb", compression="jpeg", compressionargs={"level": 90})
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(_tiles(side, side, 1), shape=(side, side, 3), dtype=np.uint8, subifds=len(levels), **options)
        for size in levels:
            writer.write(_tiles(size, size, side // size), shape=(size, size, 3), dtype=np.uint8,
                         subfiletype=1, **options)
    return {"levels": [side] + levels, "file_bytes": Path(path).stat().st_size}


def read(path: str) -> dict:
    from msgf.data.regions import open_image

    timings = {}
    start = time.perf_counter()
    reader = open_image(path)
    timings["open_s"] = time.perf_counter() - start
    start = time.perf_counter()
    glance = reader.read_glance(96, 96)
    timings["glance_s"] = time.perf_counter() - start
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    height, width = reader.shape[:2]
    for side in (96, 128, 160) * 10:
        y, x = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        assert reader.read_region(y, x, side, side).shape == (side, side, 3)
    timings["region_ms"] = (time.perf_counter() - start) / 30 * 1000
    timings["glance_level"] = reader.glance_level(96, 96)
    timings["glance_mean"] = float(glance.mean())
    reader.close()
    return timings


def child(argv: list[str]) -> dict:
    """Run one step in a fresh interpreter and return its result and peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--child", *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--workdir", default="/tmp/msgf_regions")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, path = args.child[0], args.child[1]
        start = time.perf_counter()
        if step == "read+torch":
            import torch  # noqa: F401  (only its memory matters here)
        result = read(path) if step.startswith("read") else write(path, args.side, step == "write-pyramid")
        result["seconds"] = round(time.perf_counter() - start, 2)
        result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(result))
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    pyramid, flat = str(work / "pyramid.tif"), str(work / "flat.tif")
    steps = {"write-pyramid": child(["write-pyramid", pyramid, "--side", str(args.side)]),
             "read-pyramid": child(["read", pyramid]),
             "write-flat": child(["write-flat", flat, "--side", str(args.side)]),
             "read-flat": child(["read", flat]),
             "read-flat+torch": child(["read+torch", flat])}
    for path in (pyramid, flat):
        Path(path).unlink()
    results = {"side": args.side, "raw_bytes": args.side * args.side * 3, "limit_bytes": LIMIT_BYTES,
               "steps": steps, "all_under_limit": all(s["peak_rss_bytes"] < LIMIT_BYTES for s in steps.values())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regions.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# regions: {args.side}x{args.side} RGB JPEG-tiled TIFF ({results['raw_bytes'] / 1e9:.2f} GB raw)", "",
             "| step | peak RSS (MB) | seconds | notes |", "|---|---|---|---|"]
    for name, s in steps.items():
        note = (f"glance {s['glance_s']:.2f} s from level {s['glance_level']}, region {s['region_ms']:.1f} ms"
                if name.startswith("read") else f"file {s['file_bytes'] / 1e6:.0f} MB, levels {s['levels']}")
        lines.append(f"| {name} | {s['peak_rss_bytes'] / 2**20:.0f} | {s['seconds']} | {note} |")
    lines += ["", f"Limit: 1024 MB per step. All under the limit: {results['all_under_limit']}."]
    (out / "regions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
