"""Host-side cost of one `msgf.ops.crop_resize` call (issue 29): a tiny problem, so that the
pixels cost nothing and what is timed is the Python wrapper, the checks and the dispatch.

Workload: 2 uint8 32x32x3 images, 2 boxes, 8x8 normalised float32 output, 1 thread; the
median over rounds of the mean time per call. Side by side in one run, alternating rounds:

- each source tree given with --tree LABEL=PATH (e.g. a `git worktree` of the commit before a
  change, with the compiled msgf/_C copied in), imported in a fresh process per round;
- in each tree, the floor of the way it calls the compiled kernel: `msgf._C.crop_resize_cpu`
  on buffers made beforehand (the C++ call alone), and `torch.empty` of the output (one
  allocation, the least any op returning a new tensor pays).

    git worktree add /tmp/before HEAD~1 && cp .venv/lib/python3*/site-packages/msgf/_C*.so /tmp/before/msgf/
    python benchmarks/crop_host.py --tree before=/tmp/before --tree after=.

Writes benchmarks/results/crop_host.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

# Run in a fresh interpreter with the tree first on sys.path; prints microseconds per call.
CHILD = r"""
import importlib.util, json, os, sys, time
tree = os.path.realpath(sys.argv[1])
if not os.path.realpath(importlib.util.find_spec("msgf").origin).startswith(tree + os.sep):
    # An editable install redirects `import msgf` to its own tree whatever sys.path says.
    sys.meta_path = [f for f in sys.meta_path if "Redirecting" not in type(f).__name__]
sys.path.insert(0, tree)
import torch
torch.set_num_threads(1)
import msgf
from msgf import _C
from msgf.ops import crop_resize

calls = int(sys.argv[2])
images = torch.zeros((2, 32, 32, 3), dtype=torch.uint8)
boxes = torch.tensor([[0, 1.0, 2.0, 20.0, 22.0], [1, 0.0, 0.0, 16.0, 16.0]])
mean = std = (0.5, 0.5, 0.5)
out = torch.empty((2, 3, 8, 8))
jobs = torch.tensor([[out.data_ptr(), 8, 8], [out.data_ptr() + 3 * 64 * 4, 8, 8]], dtype=torch.int64)
scale, shift = torch.full((3,), 1 / 127.5), torch.full((3,), -1.0)

def kernel_alone():
    _C.crop_resize_cpu(image=images.data_ptr(), boxes=boxes.data_ptr(), jobs=jobs.data_ptr(),
                       scale=scale.data_ptr(), shift=shift.data_ptr(), num_threads=1, direct=False, src_type=0,
                       shape=[2, 3, 32, 32], strides=[3072, 1, 96, 3], num_boxes=2, max_out_pixels=64,
                       out_type=0, antialias=False)

candidates = {"crop_resize": lambda: crop_resize(images, boxes, 8, mean=mean, std=std),
              "kernel call alone": kernel_alone,
              "torch.empty of the output": lambda: torch.empty((2, 3, 8, 8))}
result = {}
for name, fn in candidates.items():
    for _ in range(200):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    result[name] = (time.perf_counter() - start) / calls * 1e6
result["msgf"] = msgf.__file__
print(json.dumps(result))
"""


def measure(path: Path, calls: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(calls)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                        help="a source tree to import msgf from (default: this one, as 'current')")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=3000, help="calls per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    trees = {}
    for item in args.tree or [f"current={Path(__file__).resolve().parents[1]}"]:
        label, sep, path = item.partition("=")
        if not sep or not label or not Path(path, "msgf", "__init__.py").is_file():
            parser.error(f"--tree: expected LABEL=PATH of a source tree with msgf/__init__.py, got {item!r}")
        trees[label] = Path(path).resolve()
    rounds = {label: [] for label in trees}
    for _ in range(args.rounds):
        for label, path in trees.items():
            rounds[label].append(measure(path, args.calls))
    report = {"workload": "2 uint8 32x32x3 images, 2 boxes, 8x8 float32 out, normalised, 1 thread",
              "calls_per_round": args.calls, "rounds": args.rounds, "machine": platform.machine(),
              "cpus": os.cpu_count(), "load_average": list(os.getloadavg()), "trees": {}}
    for label, runs in rounds.items():
        names = [k for k in runs[0] if k != "msgf"]
        report["trees"][label] = {"path": str(trees[label]), "imported": runs[0]["msgf"],
                                  "us_per_call": {k: statistics.median(r[k] for r in runs) for k in names}}
    base = next(iter(report["trees"].values()))["us_per_call"]["crop_resize"]
    lines = ["# Host-side cost of one crop_resize call (CPU)", "",
             f"{report['workload']}; medians of {args.rounds} alternating rounds of {args.calls} calls, each tree "
             f"in a fresh process; 1-min load average {report['load_average'][0]:.1f} at the end.", "",
             "| tree | crop_resize (us) | vs the first tree | kernel call alone (us) | torch.empty of the output (us) |",
             "|---|---:|---:|---:|---:|"]
    for label, tree in report["trees"].items():
        us = tree["us_per_call"]
        lines.append(f"| {label} | {us['crop_resize']:.1f} | {us['crop_resize'] / base:.2f}x | "
                     f"{us['kernel call alone']:.1f} | {us['torch.empty of the output']:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crop_host.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "crop_host.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
