"""`reproduce(preset)`: train (or reuse) every model of the plan, measure, write the report.

Order: the GFNet runs (msgf.reproduce.runs), the static baselines (msgf.reproduce.static),
the measurements (msgf.reproduce.measure) and the claims (msgf.reproduce.claims), then the
report (msgf.reproduce.report). Every model is cached in the workdir, so an interrupted
command picks up where it stopped; the measurements are recomputed each time (seconds to
minutes: threshold searches, one export with random locations, timings).
"""
from __future__ import annotations

import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from msgf.reproduce import claims as claim_checks
from msgf.reproduce import measure
from msgf.reproduce.plan import EQUAL_PRESENTATION_RUN, MS_RUN
from msgf.reproduce.plan import plan as make_plan
from msgf.reproduce.runs import ensure_run
from msgf.reproduce.static import ensure_static


def default_workdir(preset: str) -> Path:
    return Path("runs") / f"reproduce-{preset}"


def reproduce(preset: str, *, workdir: str | Path | None = None, out: str | Path | None = None,
              progress: bool = True, seed: int = 0, jobs: int = 1, log=print, command: str | None = None) -> dict:
    """Run the whole plan of `preset` ("tiny" or "cpu"); the report written to `out` (default:
    the plan's, e.g. docs/results for cpu, else the workdir). Returns the report's JSON.

    `jobs` > 1 trains that many models at once in separate processes (msgf.reproduce.parallel),
    each with an equal share of torch's threads; the measurements run afterwards in this one."""
    import torch

    from msgf.reproduce.report import REPORT_NAME, write_report

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a positive integer, got {jobs!r}")
    plan = make_plan(preset, seed=seed)
    workdir = Path(workdir) if workdir is not None else default_workdir(preset)
    out = Path(out) if out is not None else (plan.default_report_dir or workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"workdir: {workdir} exists and is not a directory")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    from msgf.train.data import Splits

    config = plan.base_config()
    threads = max(1, torch.get_num_threads() // jobs)
    if jobs > 1:
        from msgf.reproduce.parallel import train_models

        log(f"training {len(plan.gfnet_runs()) + len(plan.static)} models in {jobs} processes "
            f"of {threads} thread(s) each")
        runs, static = train_models(plan, workdir, jobs, threads=threads, log=log)
        splits = Splits(config.data, config.seed, progress=progress)
    else:
        gfnet_specs = plan.gfnet_runs()
        total = len(gfnet_specs) + len(plan.static)
        runs = {}
        for i, spec in enumerate(gfnet_specs, 1):
            runs[spec.name] = ensure_run(spec, workdir, progress=progress,
                                         log=lambda m, i=i: log(f"[{i}/{total}] {m}"))
        splits = Splits(config.data, config.seed, progress=progress)
        static = []
        for i, spec in enumerate(plan.static, len(gfnet_specs) + 1):
            static.append(ensure_static(spec, config, splits, workdir, progress=progress,
                                        log=lambda m, i=i: log(f"[{i}/{total}] {m}")))
    log("measuring: threshold sweeps, ablations, throughput")
    measured = measure_all(plan, runs, static, splits, workdir, progress=progress, log=log)
    report = {
        "preset": preset, "command": command or f"msgf reproduce --preset {preset}",
        "workdir": str(workdir), "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_seconds": time.time() - started,
        "training_seconds": {**{name: r.seconds for name, r in runs.items()},
                             **{s["name"]: s["seconds"] for s in static}},
        "reused": sorted([name for name, r in runs.items() if r.reused] + [s["name"] for s in static if s["reused"]]),
        "environment": {**environment(), "training_jobs": jobs, "training_threads_per_job": threads},
        "plan": plan.to_dict(), "notes": list(plan.notes),
        "configs": {name: r.summary["config"] for name, r in runs.items()},
        "runs": {name: {"path": str(r.path), "stages": r.summary["stages"], "results": r.summary["results"],
                        "macs_table": r.summary["macs_table"]} for name, r in runs.items()},
        "static": static,
        **measured,
    }
    out.mkdir(parents=True, exist_ok=True)
    log(f"drawing {plan.scene_grid} test scenes")
    report["scene_grid"] = draw_scenes(plan, runs, measured["sweeps"], splits, out / f"{REPORT_NAME}_scenes.png",
                                       workdir / "scenes")
    report["wall_seconds"] = time.time() - started
    paths = write_report(report, out)
    log("wrote " + ", ".join(str(p) for p in paths))
    return report


def environment() -> dict:
    import os

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "argv": sys.argv}


def measure_all(plan, runs: dict, static: list[dict], splits, workdir: Path, *, progress: bool, log) -> dict:
    from msgf.checkpoint import load_checkpoint
    from msgf.engine import Thresholds
    from threshold_search import Trajectories

    method, seed = plan.search_method, plan.random_seed
    fixed_names = [name for name in runs if name.startswith("fixed-")]
    ms_names = [MS_RUN] + [name for name in (EQUAL_PRESENTATION_RUN,) if name in runs]
    traj = {name: {which: Trajectories.load(runs[name].path / f"{which}_trajectories.npz") for which in ("val", "test")}
            for name in [*fixed_names, *ms_names]}
    budgets = measure.sweep_budgets([t["val"] for t in traj.values()], plan.num_budgets)
    sweeps = {}
    for name in [*ms_names, *fixed_names]:
        log(f"  {name}: {method} thresholds for {len(budgets)} budgets")
        sweeps[name] = measure.sweep(traj[name]["val"], traj[name]["test"], budgets, method=method)
    glance = {name: measure.glance_point(t["test"]) for name, t in traj.items()}

    # policy ablation: the same MS-GFNet, focus patches at uniformly random locations
    log(f"  {MS_RUN}: trajectories with random locations (seed {seed})")
    random_paths = measure.export_random(runs[MS_RUN].path / "model.ckpt", splits, runs[MS_RUN].path, seed=seed,
                                         batch_size=runs[MS_RUN].summary["config"]["data"]["eval_batch_size"],
                                         progress=progress)
    random_traj = {which: Trajectories.load(path) for which, path in random_paths.items()}
    random_locations = measure.sweep(random_traj["val"], random_traj["test"], budgets, method=method)
    # the last stage that trained: a stage of 0 epochs (cpu-demo's stage III) has no results
    results = runs[MS_RUN].summary["results"]
    final = results[max((k for k in results if k.startswith("stage")), key=lambda k: int(k.removeprefix("stage")))]

    log(f"  {MS_RUN}: exit criteria entropy and random")
    criteria = {"confidence": sweeps[MS_RUN]}
    for criterion in ("entropy", "random"):
        criteria[criterion] = measure.sweep(traj[MS_RUN]["val"], traj[MS_RUN]["test"], budgets, method=method,
                                            criterion=criterion, seed=seed)

    pair = dict(zip(("contrastive", "increments"), plan.reward_pair()))
    stage2 = {reward: runs[name].summary["results"]["stage2"] for reward, name in pair.items()}

    # compute saving: MS-GFNet's test front against the most accurate static baseline among those
    # that learned enough to count (claims.QUALIFYING_MARGIN above the majority class); where
    # none did, the throughput still compares against the most accurate one
    majority = measure.majority_accuracy(traj[MS_RUN]["test"])
    for s in static:
        s["counts_for_saving"] = claim_checks.qualifies(s["test_accuracy"], majority)
    qualifying = [s for s in static if s["counts_for_saving"]]
    best = max(qualifying or static, key=lambda s: (s["test_accuracy"], -s["macs"]))
    front = [(glance[MS_RUN]["macs"], glance[MS_RUN]["accuracy"])] + \
        [(row["test_macs"], row["test_accuracy"]) for row in sweeps[MS_RUN]]
    needed = claim_checks.macs_to_reach(front, best["test_accuracy"])
    model = load_checkpoint(runs[MS_RUN].path / "model.ckpt").eval()
    cfg = model.config
    candidates = [("glance only", Thresholds(np.full((cfg.T - 1, cfg.num_sizes), -math.inf), sizes=cfg.patch_sizes),
                   glance[MS_RUN]["accuracy"], glance[MS_RUN]["macs"])]
    candidates += [(f"budget {row['budget'] / 1e6:.2f}M", Thresholds.from_search(row["result"]), row["test_accuracy"],
                    row["test_macs"]) for row in sweeps[MS_RUN]]
    reaching = [c for c in candidates if c[2] >= best["test_accuracy"] - claim_checks.EPS]
    operating = min(reaching, key=lambda c: c[3]) if reaching else max(candidates, key=lambda c: (c[2], -c[3]))

    log(f"  throughput: {best['name']} against MS-GFNet at {operating[0]} (1 thread, "
        f"median of {plan.timing_repeats})")
    test_set = splits.evaluation("test")
    images, labels = measure.first_images(test_set, plan.timing_images)
    from msgf.reproduce import static as static_models

    batch = runs[MS_RUN].summary["config"]["data"]["eval_batch_size"]
    static_model = static_models.load(best, workdir, cfg.backbone, cfg.num_classes)
    throughput = {
        "images": len(images), "operating_point": operating[0], "thresholds": operating[1].to_dict(),
        "static": {"name": best["name"], "macs": best["macs"],
                   **measure.static_throughput(static_model, images, batch, plan.timing_repeats)},
        "ms_gfnet": measure.gfnet_throughput(model, operating[1], images, batch, plan.timing_repeats),
    }
    throughput["speedup"] = throughput["ms_gfnet"]["images_per_second"] / throughput["static"]["images_per_second"]

    # the claims are judged on paired per-scene scores: which test scenes each model gets right
    log("  claims: paired per-scene scores")
    scores = {name: measure.test_scores(sweeps[name], traj[name]["test"]) for name in sweeps}
    random_scores = measure.test_scores(random_locations, random_traj["test"])
    criteria_scores = {c: measure.test_scores(criteria[c], traj[MS_RUN]["test"]) for c in ("entropy", "random")}
    # stage II's models, every step run: their t=2 accuracies are the reward table's
    at_t2 = {reward: measure.step_scores(runs[name].path / "stage2.ckpt", test_set, 1, batch)
             for reward, name in pair.items()}
    # the saving's verdict: MS-GFNet at the largest budget within 1/SAVING_FACTOR of the static
    # MACs (chosen by budget, before any test accuracy is seen) against the static model
    cheap = [i for i, b in enumerate(budgets) if b <= best["macs"] / claim_checks.SAVING_FACTOR + claim_checks.EPS]
    saving_row = sweeps[MS_RUN][cheap[-1]] if cheap else None
    static_scores = static_models.test_scores(best, workdir, cfg.backbone, cfg.num_classes, splits, batch) \
        if qualifying and cheap else None

    fixed_scores = {n: scores[n] for n in fixed_names}
    claim_list = [claim_checks.ms_vs_fixed(scores[MS_RUN], fixed_scores)]
    if EQUAL_PRESENTATION_RUN in sweeps:
        claim_list.append(claim_checks.ms_vs_fixed(scores[EQUAL_PRESENTATION_RUN], fixed_scores,
                                                   claim_checks.MS_VS_FIXED_EQUAL_PRESENTATION))
    claim_list += [
        claim_checks.policy_vs_random(scores[MS_RUN], random_scores),
        claim_checks.criteria_order(scores[MS_RUN], criteria_scores["entropy"], criteria_scores["random"]),
        claim_checks.reward(at_t2["contrastive"], at_t2["increments"]),
        claim_checks.saving(best["macs"] if qualifying else None, needed,
                            None if saving_row is None else scores[MS_RUN][cheap[-1]], static_scores),
    ]

    # where MS-GFNet's errors come from, at the saving's operating budget (the largest, where
    # no budget is that cheap) and with every step at each size
    row = saving_row or sweeps[MS_RUN][-1]
    log(f"  {MS_RUN}: error budget on test at {row['budget'] / 1e6:.2f}M")
    errors = measure.test_error_budget(model, test_set, Thresholds.from_search(row["result"]), batch,
                                       progress=progress)
    return {
        "budgets": budgets,
        "majority_accuracy": majority,
        "glance": glance,
        "sweeps": sweeps,
        "policy_ablation": {"random_seed": seed, "random_locations": random_locations,
                            "hit_rate_policy": final["hit_rate_policy"], "hit_rate_random": final["hit_rate_random"],
                            "accuracy_policy": final["accuracy_policy"], "accuracy_random": final["accuracy_random"]},
        "criteria": criteria,
        "reward_runs": pair,
        "reward": {name: {k: s[k] for k in ("accuracy_policy", "accuracy_random", "hit_rate_policy",
                                            "hit_rate_random")} for name, s in stage2.items()},
        "saving": {"qualifying_margin": claim_checks.QUALIFYING_MARGIN,
                   "qualifying_static": [s["name"] for s in qualifying], "best_static": best["name"], "static_accuracy": best["test_accuracy"], "static_macs": best["macs"],
                   "front": front, "ms_gfnet_macs": needed,
                   "ratio": None if needed is None else best["macs"] / needed},
        "throughput": throughput,
        "error_budget": errors,
        "claims": [c.to_dict() for c in claim_list],
    }


def draw_scenes(plan, runs: dict, sweeps: dict, splits, path: Path, panels_dir: Path) -> dict:
    """The scene grid: MS-GFNet at the largest budget's thresholds (the most focus steps) on
    the first test scenes with and without a sign."""
    from msgf.checkpoint import load_checkpoint
    from msgf.engine import Thresholds
    from msgf.reproduce import figures

    model = load_checkpoint(runs[MS_RUN].path / "model.ckpt").eval()
    row = sweeps[MS_RUN][-1]
    test = splits.evaluation("test")
    labels = test.labels if hasattr(test, "labels") else [int(test[i]["label"]) for i in range(len(test))]
    chosen = figures.pick_scenes(labels, plan.scene_grid)
    from msgf.train.data import collate

    batch = collate([test[i] for i in chosen])
    names = list(model.config.class_names) or [str(k) for k in range(model.config.num_classes)]
    scenes = figures.scene_grid(path, model, Thresholds.from_search(row["result"]), batch["images"],
                                batch["labels"], names, panels_dir, boxes=batch["boxes"])
    return {"budget": row["budget"], "test_indices": chosen, "scenes": scenes}
