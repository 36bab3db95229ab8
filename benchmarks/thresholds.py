"""Threshold search speed and quality (issue 6) on synthetic trajectories.

Workload: N=50,000 validation samples, T=4, K=3 sizes (96/128/160; 40 nodes), from
`threshold_search.make_trajectories`, plus an independent held-out split of the same size.

- evaluate_many: threshold sets per second for a population of random grid sets (what the GA
  scores), median of repeats; target >= 2,000 on 2 cores;
- one budget searched by the GA, from trajectories in memory (sorting included), median of
  repeats; target <= 10 s;
- a sweep of 9 budgets in one call; target <= 60 s;
- GA minus geometric accuracy (percentage points) at each budget, on the searched split and on
  the held-out split, with the held-out MACs (only thresholds move to new data, so cost drifts).

    python benchmarks/thresholds.py              # writes benchmarks/results/thresholds.json and .md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pygad

from threshold_search import Evaluator, Trajectories, format_macs, make_trajectories, search
from threshold_search.grid import decode, level_grids

SWEEP = ["1.0G", "1.5G", "2.0G", "2.5G", "3.0G", "3.5G", "4.0G", "5.0G", "6.0G"]
TARGETS = dict(sets_per_second=2000, one_budget_seconds=10, sweep_seconds=60)


def fresh(traj: Trajectories) -> Trajectories:
    """A distinct object, so no cached evaluator makes a timed search look cheaper."""
    return Trajectories(sizes=traj.sizes, T=traj.T, labels=traj.labels, conf=traj.conf, correct=traj.correct,
                        pred=traj.pred, macs=traj.macs, entropy=traj.entropy)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160])
    parser.add_argument("--population", type=int, default=1000, help="sets per evaluate_many call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", default="2.5G", help="the one-budget search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    val = make_trajectories(args.n, args.T, args.sizes, seed=args.seed)
    held_out = make_trajectories(args.n, args.T, args.sizes, seed=args.seed + 1)

    build_seconds, evaluator = timed(lambda: Evaluator(fresh(val)), 3)
    grids = level_grids(evaluator.node_scores.T, evaluator.T, evaluator.K, 64)
    rng = np.random.default_rng(args.seed)
    genes = rng.integers(0, np.repeat([g.size for g in grids], evaluator.K), (args.population, len(grids) * evaluator.K))
    etas = decode(genes, grids, evaluator.K)
    evaluator.evaluate_many(etas[:50])  # warm caches
    evaluate_seconds, _ = timed(lambda: evaluator.evaluate_many(etas), args.repeats)
    sets_per_second = args.population / evaluate_seconds
    print(f"evaluate_many: {sets_per_second:,.0f} sets/s (N={args.n}, {val.num_nodes} nodes)", flush=True)

    one_seconds, one = timed(lambda: search(fresh(val), args.budget, method="ga", seed=args.seed), 3)
    print(f"one budget ({args.budget}): {one_seconds:.2f} s, {one.evaluations} sets scored", flush=True)

    sweep_seconds, ga = timed(lambda: search(fresh(val), budgets=SWEEP, method="ga", seed=args.seed), 1)
    print(f"sweep of {len(SWEEP)} budgets: {sweep_seconds:.2f} s", flush=True)
    geometric = search(val, budgets=SWEEP, method="geometric")

    rows = []
    for g, b in zip(ga.results, geometric.results):
        ga_test, geo_test = g.evaluate_on(held_out), b.evaluate_on(held_out)
        rows.append(dict(budget=g.budget, ga_val=dict(accuracy=g.accuracy, macs=g.macs),
                         geometric_val=dict(accuracy=b.accuracy, macs=b.macs, size=b.details["size"]),
                         ga_test=dict(accuracy=ga_test[0], macs=ga_test[1]),
                         geometric_test=dict(accuracy=geo_test[0], macs=geo_test[1]),
                         margin_val_points=100 * (g.accuracy - b.accuracy),
                         margin_test_points=100 * (ga_test[0] - geo_test[0]),
                         evaluations=g.evaluations, seconds=g.seconds))

    report = dict(
        workload=dict(n=args.n, T=args.T, sizes=args.sizes, nodes=val.num_nodes, held_out_n=args.n, seed=args.seed),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), load_average=os.getloadavg(),
                     numpy=np.__version__, pygad=pygad.__version__, python=platform.python_version()),
        evaluator_build_seconds=build_seconds,
        evaluate_many=dict(population=args.population, repeats=args.repeats, median_seconds=evaluate_seconds,
                           sets_per_second=sets_per_second),
        one_budget=dict(budget=args.budget, median_seconds=one_seconds, evaluations=one.evaluations,
                        accuracy=one.accuracy, macs=one.macs),
        sweep=dict(budgets=SWEEP, seconds=sweep_seconds, rows=rows),
        targets=TARGETS,
        targets_met=dict(sets_per_second=sets_per_second >= TARGETS["sets_per_second"],
                         one_budget_seconds=one_seconds <= TARGETS["one_budget_seconds"],
                         sweep_seconds=sweep_seconds <= TARGETS["sweep_seconds"]),
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "thresholds.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "thresholds.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    w, m = report["workload"], report["machine"]
    ev, one, sweep = report["evaluate_many"], report["one_budget"], report["sweep"]
    met = report["targets_met"]
    mark = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    lines = [
        "# Threshold search benchmark (`benchmarks/thresholds.py`)", "",
        f"Synthetic trajectories: N={w['n']:,} searched + {w['held_out_n']:,} held out, T={w['T']}, "
        f"sizes {w['sizes']} ({w['nodes']} nodes), seed {w['seed']}. Machine: {m['cpus']} CPUs, "
        f"load average {m['load_average'][0]:.2f} at the end, numpy {m['numpy']}, pygad {m['pygad']}.", "",
        "| measure | value | target |", "|---|---|---|",
        f"| evaluate_many, {ev['population']} sets (median of {ev['repeats']}) | "
        f"{ev['sets_per_second']:,.0f} sets/s | >= 2,000 ({mark(met['sets_per_second'])}) |",
        f"| evaluator build (sorting, once per data set) | {report['evaluator_build_seconds']:.2f} s | |",
        f"| GA, one budget ({one['budget']}, median of 3) | {one['median_seconds']:.2f} s "
        f"({one['evaluations']:,} sets) | <= 10 s ({mark(met['one_budget_seconds'])}) |",
        f"| GA, sweep of {len(sweep['budgets'])} budgets | {sweep['seconds']:.2f} s | "
        f"<= 60 s ({mark(met['sweep_seconds'])}) |", "",
        "GA against the geometric (MSDNet) baseline, best fixed size, per budget. Margins in "
        "percentage points of accuracy; held-out MACs show the cost drift of moving thresholds.", "",
        "| budget | GA val acc | geo val acc (size) | margin val | GA held-out acc / MACs | "
        "geo held-out acc / MACs | margin held-out |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sweep["rows"]:
        lines.append(
            f"| {format_macs(r['budget'])} | {100 * r['ga_val']['accuracy']:.2f}% | "
            f"{100 * r['geometric_val']['accuracy']:.2f}% ({r['geometric_val']['size']}) | "
            f"{r['margin_val_points']:+.2f} | {100 * r['ga_test']['accuracy']:.2f}% / "
            f"{format_macs(r['ga_test']['macs'])} | {100 * r['geometric_test']['accuracy']:.2f}% / "
            f"{format_macs(r['geometric_test']['macs'])} | {r['margin_test_points']:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
