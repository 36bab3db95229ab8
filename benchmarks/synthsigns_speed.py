"""Generation speed of the procedural speed-limit scenes, per core.

One process renders scenes back to back (no JPEG encoding: the on-the-fly dataset never
encodes) and reports scenes per second of CPU time and of wall time. CPU time is the per-core
figure: it is not inflated by other work sharing the machine. Target (issue 3): >= 30
scenes/s per core at 960x1280. Writes benchmarks/results/synthsigns_speed.{json,md}.

    python benchmarks/synthsigns_speed.py --num 300
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from msgf.data.synthsigns import render_scene


def measure(num: int, size: tuple[int, int], seed: int) -> dict:
    render_scene(0, "train", seed, size)  # builds the texture bank once, as a dataset worker does
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(1, num + 1):
        render_scene(index, "train", seed, size)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"size": list(size), "scenes": num, "cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2),
            "scenes_per_cpu_second": round(num / cpu, 1), "scenes_per_wall_second": round(num / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    rows = [measure(args.num, size, args.seed) for size in ((960, 1280), (480, 640))]
    results = {"rows": rows, "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
               "target_scenes_per_second_per_core_960x1280": 30}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synthsigns_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# synthsigns generation speed (one process, no JPEG encoding)", "",
             "| size | scenes | scenes / CPU second (per core) | scenes / wall second |", "|---|---|---|---|"]
    lines += [f"| {r['size'][0]}x{r['size'][1]} | {r['scenes']} | {r['scenes_per_cpu_second']} | "
              f"{r['scenes_per_wall_second']} |" for r in rows]
    lines += ["", f"Load average during the run: {results['load_average_1min']:.2f} on {results['cpu_count']} cores "
              "(wall-clock rates drop when the machine is shared; CPU-time rates do not)."]
    (out / "synthsigns_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
