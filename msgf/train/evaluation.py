"""Measuring a run on its validation and test splits, and the lines that report it.

Every process evaluates an interleaved shard of the split and the counts are all-reduced, so a
distributed run reports the same numbers as a single process.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from msgf.models.inference import inference_copy
from msgf.train import distributed
from msgf.train.data import collate, generator
from msgf.train.metrics import StepTally, evaluate_steps


def evaluation_batches(run, which: str, *, sharded: bool = True):
    """Batches of the `which` split ("val" or "test"): this process's shard, or all of it."""
    dataset = run.splits.evaluation(which)
    if sharded:
        dataset = torch.utils.data.Subset(dataset, range(run.world.rank, len(dataset), run.world.size))
    return torch.utils.data.DataLoader(dataset, batch_size=run.cfg.data.eval_batch_size, shuffle=False,
                                       num_workers=run.cfg.data.workers, collate_fn=collate)


def deployed_model(run):
    """What the run's evaluation passes and trajectory export measure: the inference copy of the
    model as it stands (BatchNorm folded, channels-last on the CPU; msgf.models.inference), which
    is what msgf infer and the Predictor run. Equal to the model up to float rounding, and its
    patches go through f_L about twice as fast on the CPU. It shares the run's memo of f_G's
    outputs (msgf.models.memo), which holds only while f_G's weights stay fixed."""
    model, was_training = run.model, run.model.training
    deployed = inference_copy(model.eval())
    model.train(was_training)
    deployed.global_encoder.memo = model.global_encoder.memo
    return deployed


def steps_summary(run, which: str, sources: tuple[str, ...], seed_key: int) -> dict:
    """Accuracy at every step per patch size, hit and repeat rates, with the locations of each
    source ("policy": pi's means; "random": uniform, drawn from a stream seeded by `seed_key`),
    measured on `deployed_model`."""
    batches = evaluation_batches(run, which)
    gen = generator(run.cfg.seed, 100 + seed_key, 0, run.world.rank, "locations")
    with tqdm(total=len(batches), desc=f"evaluate {which}", unit="batch", leave=False,
              disable=not (run.main and run.opt.progress)) as bar:
        tally = evaluate_steps(deployed_model(run), batches, device=run.device, generator=gen,
                               autocast=run.autocast, sources=sources, progress=bar)
    total = StepTally(run.cfg.T, run.cfg.patch_sizes)
    total.load_tensor(distributed.all_reduce_sum(run.world, tally.as_tensor()))
    return total.summary()


def scored_validation(run, seed_key: int, sources: tuple[str, ...], scored_by: str) -> dict:
    """steps_summary on the validation split, with a "score": the accuracy with `scored_by`'s
    locations averaged over steps and patch sizes (the stage's best epoch has the highest)."""
    summary = steps_summary(run, "val", sources, seed_key)
    curve = summary[f"accuracy_{scored_by}"]
    summary["score"] = sum(curve) / len(curve)
    return summary


def epoch_line(name: str, epoch: int, epochs: int, train_stats: dict, val: dict, score: float, seconds: float,
               T: int) -> str:
    """One printed line per epoch: the training losses, then the validation figures."""
    parts = [f"{name} epoch {epoch + 1}/{epochs} ({seconds:.0f}s)"]
    parts += [f"{k} {v:.4f}" for k, v in train_stats.items() if k in ("loss", "reward")]
    if "accuracy_policy" in val:
        for key in ("accuracy_random", "accuracy_policy"):
            if any(val[key]):
                parts.append(f"val {key.split('_')[1]} acc/step " + " ".join(f"{a:.3f}" for a in val[key]))
        for key in ("hit_rate_policy", "hit_rate_random"):
            if val[key] and val[key][0] is not None and any(val[key]):
                parts.append(f"{key.replace('_rate', '')} " + " ".join(f"{h:.3f}" for h in val[key]))
        if T > 2 and any(val["accuracy_policy"]):
            parts.append("repeat_policy " + " ".join(f"{r:.3f}" for r in val["repeat_rate_policy"][1:]))
    else:
        parts += [f"val {k} {v:.4f}" for k, v in val.items()]
    parts.append(f"score {score:.4f}")
    return " | ".join(parts)


def format_steps(title: str, summary: dict, config) -> str:
    """Accuracy at each step t (per patch size) and hit rates, policy vs random locations."""
    lines = [f"{title} ({summary['num_samples']} images, {summary['num_with_box']} with a box):"]
    steps = "  ".join(f"t={t}" for t in range(1, config.T + 1))
    lines.append(f"  {'patch':>6} {'locations':>9}  accuracy per step ({steps})    hit rate per focus step"
                 + ("    repeat rate from step 3" if config.T > 2 else ""))
    for size, entry in summary["sizes"].items():
        for source in ("policy", "random"):
            acc = " ".join(f"{a:.4f}" for a in entry[f"accuracy_{source}"])
            hits = entry[f"hit_rate_{source}"]
            hit = " ".join("  -   " if h is None else f"{h:.4f}" for h in hits)
            repeats = " ".join(f"{r:.4f}" for r in entry[f"repeat_rate_{source}"][1:])
            lines.append(f"  {size:>6} {source:>9}  {acc}    {hit}" + (f"    {repeats}" if repeats else ""))
    return "\n".join(lines)
