"""The measurements behind the claims: threshold sweeps, ablations and CPU throughput.

Every accuracy-vs-MACs number comes from trajectories: thresholds are searched on the
validation trajectories for a budget and applied, unchanged, to the test trajectories
(threshold_search). The ablations vary one thing at equal budgets: where the patches go
(pi's mean or uniformly random, `export_trajectories(locations=...)`) or what decides the
exit (threshold_search's confidence / entropy / random criteria).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from threshold_search import Result, Trajectories, search


def sweep_budgets(trajectories: list[Trajectories], count: int) -> list[float]:
    """`count` budgets evenly spaced above the glance cost (the largest among the models, so
    that every model can meet every budget) up to the costliest path of any model, where every
    sample may run every step."""
    if count < 1:
        raise ValueError(f"count: expected at least one budget, got {count}")
    if not trajectories:
        raise ValueError("trajectories: expected at least one trajectory set")
    low = max(float(t.macs[0]) for t in trajectories)
    high = max(float(t.macs.max()) for t in trajectories)
    if high <= low:
        raise ValueError("trajectories: no focus step costs anything; nothing to sweep")
    return [float(b) for b in np.linspace(low, high, count + 1)[1:]]


def sweep(val: Trajectories, test: Trajectories, budgets: list[float], *, method: str = "ga",
          criterion: str = "confidence", seed: int = 0) -> list[dict]:
    """Per budget: thresholds searched on `val`, their accuracy and mean MACs on val and test."""
    front = search(val, budgets=budgets, method=method, criterion=criterion, seed=seed)
    rows = []
    for result in front.results:
        accuracy, macs = result.evaluate_on(test)
        rows.append({"budget": result.budget, "val_accuracy": result.accuracy, "val_macs": result.macs,
                     "test_accuracy": accuracy, "test_macs": macs, "result": result.to_dict()})
    return rows


def test_scores(rows: list[dict], test: Trajectories) -> list[np.ndarray]:
    """Per row of a `sweep`: which test scenes its thresholds classify right (0/1), for the
    paired claims."""
    return [Result.from_dict(row["result"]).correct_on(test).astype(np.float64) for row in rows]


def step_scores(checkpoint: Path, dataset, step: int, batch_size: int) -> np.ndarray:
    """Per scene of `dataset`: the fraction of the model's patch sizes whose prediction after
    step `step` (0: the glance) is right, pi's locations, every step run. Its mean is the
    `accuracy_policy[step]` that training reports for that checkpoint."""
    import contextlib

    from msgf.checkpoint import load_checkpoint
    from msgf.train.data import collate
    from msgf.train.metrics import evaluate_steps

    model = load_checkpoint(checkpoint).eval()
    batches = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    tally = evaluate_steps(model, batches, device="cpu", generator=torch.Generator().manual_seed(0),
                           autocast=contextlib.nullcontext, sources=("policy",), per_sample=True)
    right = torch.stack([tally.per_sample[(size, "policy")][:, step] for size in model.config.patch_sizes])
    return right.double().mean(0).numpy()


def test_error_budget(model, dataset, thresholds, batch_size: int, *, progress: bool = True) -> dict:
    """`msgf error-budget` of `model` on `dataset`: per patch size with every step run, and at
    `thresholds` (msgf.engine.error_budget)."""
    from tqdm.auto import tqdm

    from msgf.engine.error_budget import error_budget
    from msgf.train.data import collate

    batches = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    with tqdm(total=len(batches), desc="error budget", unit="batch", leave=False, disable=not progress) as bar:
        return error_budget(model, batches, thresholds=thresholds, progress=bar)


def glance_point(traj: Trajectories) -> dict:
    """Every sample exits at the glance: the cheapest point of any GFNet curve."""
    return {"macs": float(traj.macs[0]), "accuracy": float(traj.correct[:, 0].mean())}


def majority_accuracy(traj: Trajectories) -> float:
    """Accuracy of always answering the most frequent class of this split."""
    return float(np.bincount(traj.labels).max() / len(traj.labels))


def export_random(model_path: Path, splits, out_dir: Path, *, seed: int, batch_size: int,
                  progress: bool = True) -> dict[str, Path]:
    """Validation and test trajectories of the model at `model_path` with uniformly random
    focus locations (seeded), exported once into out_dir (the files are written atomically,
    so an existing one is complete)."""
    from msgf.checkpoint import load_checkpoint
    from msgf.engine import export_trajectories
    from msgf.train.data import collate

    paths = {which: Path(out_dir) / f"{which}_trajectories_random-seed{seed}.npz" for which in ("val", "test")}
    model = None
    for which, path in paths.items():
        if path.exists():
            continue
        if model is None:
            model = load_checkpoint(model_path).eval()
        batches = torch.utils.data.DataLoader(splits.evaluation(which), batch_size=batch_size, shuffle=False,
                                              collate_fn=collate)
        export_trajectories(model, batches, path, progress=progress, locations="random", seed=seed)
    return paths


def first_images(dataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` scenes of an evaluation split: uint8 (N, H, W, C) and labels (N,)."""
    from msgf.train.data import collate

    count = min(count, len(dataset))
    batch = collate([dataset[i] for i in range(count)])
    return batch["images"], batch["labels"]


def median_throughput(run, num_images: int, repeats: int) -> dict:
    """Images per second of `run()` (one pass over num_images), median of `repeats` timed
    passes after one warm-up pass, on one thread."""
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, got {repeats}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            run()
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    median = statistics.median(seconds)
    return {"images": num_images, "repeats": repeats, "seconds": seconds, "median_seconds": median,
            "images_per_second": num_images / median, "threads": 1}


def static_throughput(model, images: torch.Tensor, batch_size: int, repeats: int) -> dict:
    """`model` (msgf.reproduce.static.load's) takes the uint8 scenes: the resize is timed too.
    Batches are capped at static.chunk_size's scenes: 64 full 960x1280 scenes at once needed
    more than 24 GB (the process was killed for memory)."""
    from msgf.reproduce.static import chunk_size

    model.eval()
    batch_size = chunk_size(batch_size, model.size)

    def run():
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])

    return median_throughput(run, len(images), repeats)


def gfnet_throughput(model, thresholds, images: torch.Tensor, batch_size: int, repeats: int) -> dict:
    from msgf.engine import predict

    model.eval()
    macs = []

    def run():
        macs.clear()
        for start in range(0, len(images), batch_size):
            macs.append(predict(model, images[start:start + batch_size], thresholds).macs)

    result = median_throughput(run, len(images), repeats)
    result["mean_macs"] = float(torch.cat(macs).double().mean())
    return result
