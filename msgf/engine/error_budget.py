"""Where a trained model's errors come from: locating, reading in context, or aggregation.

A sample with an annotated object box (a sign scene) is *covered* at the first focus step whose
patch contains the centre of its first box. Each error of the final prediction falls in one
bucket:

- ``no_object_called_object``: a sample without a box (EMPTY) predicted as another class;
- ``not_covered``: the object was never inside a patch;
- ``covered_misread``: the step that first covered it predicted a wrong class;
- ``read_then_lost``: that step predicted the right class, and a later step (f_C, with the
  evidence of later patches) talked the model out of it.

Beside the buckets: the coverage (share of samples with a box that get covered), how often
the covering step reads the object right (f_C's prediction after that step, and f_L's own head
FC_t on that patch alone), and two bounds. "If every object were covered" is measured: the
samples never covered run again with their last focus patch centred on the object. "If every
covered object were read" adds the covered-but-misread errors back, which is an upper bound.

Run per patch size with every step taken (`anytime`), and at a set of exit thresholds (the
patches each sample actually saw before it exited).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from msgf import ops
from msgf.engine.predict import ImageBatch, predict_from

BUCKETS = ("no_object_called_object", "not_covered", "covered_misread", "read_then_lost")
BUCKET_TITLES = {"no_object_called_object": "no object called one", "not_covered": "not covered",
                 "covered_misread": "covered, misread", "read_then_lost": "read, then lost by f_C"}


@dataclass
class _Counts:
    """Per-sample outcomes gathered over batches, summarised once at the end."""

    correct: list[Tensor] = field(default_factory=list)
    has_object: list[Tensor] = field(default_factory=list)
    covered_at: list[Tensor] = field(default_factory=list)  # focus step index (1..T-1) or 0: never
    read_by_classifier: list[Tensor] = field(default_factory=list)
    read_by_patch: list[Tensor] = field(default_factory=list)
    oracle_correct: list[Tensor] = field(default_factory=list)
    macs: list[Tensor] = field(default_factory=list)

    def add(self, **values: Tensor) -> None:
        for name, value in values.items():
            getattr(self, name).append(value.detach().cpu())

    def summary(self) -> dict:
        cat = {name: torch.cat(values) if values else torch.zeros(0) for name, values in vars(self).items()}
        correct, has = cat["correct"].bool(), cat["has_object"].bool()
        covered = cat["covered_at"] > 0
        read = cat["read_by_classifier"].bool()
        n, n_object = len(correct), int(has.sum())
        wrong = ~correct
        buckets = {
            "no_object_called_object": int((wrong & ~has).sum()),
            "not_covered": int((wrong & has & ~covered).sum()),
            "covered_misread": int((wrong & has & covered & ~read).sum()),
            "read_then_lost": int((wrong & has & covered & read).sum()),
        }
        n_covered = int((has & covered).sum())
        accuracy = float(correct.float().mean()) if n else float("nan")
        out = {
            "samples": n, "samples_with_object": n_object,
            "accuracy": accuracy, "accuracy_ci95": wilson_interval(int(correct.sum()), n),
            "coverage": n_covered / n_object if n_object else None,
            "read_when_covered": int((has & covered & read).sum()) / n_covered if n_covered else None,
            "patch_read_when_covered": (int((has & covered & cat["read_by_patch"].bool()).sum()) / n_covered
                                        if n_covered and len(cat["read_by_patch"]) == n else None),
            "covered_at_step": {str(t + 1): int(((cat["covered_at"] == t) & has).sum())
                                for t in range(1, int(cat["covered_at"].max()) + 1)} if n_object else {},
            "errors": buckets,
            "accuracy_if_all_covered": (float(cat["oracle_correct"].float().mean())
                                        if len(cat["oracle_correct"]) == n and n else None),
            "accuracy_if_covered_read": (accuracy + buckets["covered_misread"] / n) if n else None,
        }
        if len(cat["macs"]):
            out["avg_macs"] = float(cat["macs"].double().mean())
        return out


def wilson_interval(successes: int, total: int, z: float = 1.96) -> list[float] | None:
    """The Wilson score interval of a proportion (95% at z = 1.96)."""
    if total <= 0:
        return None
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [centre - half, centre + half]


def object_centres(boxes: list[Tensor], device) -> tuple[Tensor, Tensor]:
    """(N, 2) (x, y) centre of each sample's first box, and (N,) bool: whether it has one."""
    centres = torch.zeros((len(boxes), 2), dtype=torch.float32)
    has = torch.zeros(len(boxes), dtype=torch.bool)
    for b, sample_boxes in enumerate(boxes):
        if len(sample_boxes):
            x0, y0, x1, y1 = (float(v) for v in sample_boxes[0])
            centres[b] = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2])
            has[b] = True
    return centres.to(device), has.to(device)


def contains(patches: Tensor, points: Tensor) -> Tensor:
    """(N,) bool: does patch (x0, y0, x1, y1) row b contain point (x, y) row b?"""
    return ((points[:, 0] >= patches[:, 0]) & (points[:, 0] < patches[:, 2])
            & (points[:, 1] >= patches[:, 1]) & (points[:, 1] < patches[:, 3]))


def centred_locations(centres: Tensor, side: int, image_hw: tuple[int, int]) -> Tensor:
    """(N, 2) locations (row, col) in [0, 1] whose patch of `side` is centred on each point
    (as far as the image allows): the inverse of ops.focus_boxes' placement."""
    height, width = image_hw
    top = (centres[:, 1] - side / 2).clamp(0, max(height - side, 0))
    left = (centres[:, 0] - side / 2).clamp(0, max(width - side, 0))
    # focus_boxes floors l * (H - P): aim at the middle of the wanted pixel
    row = ((top.floor() + 0.5) / max(height - side, 1)).clamp(0, 1)
    col = ((left.floor() + 0.5) / max(width - side, 1)).clamp(0, 1)
    return torch.stack([row, col], 1)


def _image_hw(images: Tensor) -> tuple[int, int]:
    return (images.shape[1], images.shape[2]) if images.dtype == torch.uint8 else (images.shape[2], images.shape[3])


@torch.no_grad()
def _anytime_batch(model, images: Tensor, labels: Tensor, boxes: list[Tensor], size: int, counts: _Counts) -> None:
    """Every focus step at `size`, pi's mean locations; then the oracle run for the uncovered."""
    cfg, hw = model.config, _image_hw(images)
    centres, has = object_centres(boxes, images.device)
    state = model.glance(images)
    states, covered_at = [state], torch.zeros(len(labels), dtype=torch.int64, device=images.device)
    read_c = torch.zeros(len(labels), dtype=torch.bool, device=images.device)
    read_p = torch.zeros_like(read_c)
    for t in range(1, cfg.T):
        proposal = model.propose(state, size)
        locs = proposal.mean.float()
        state = model.focus(state, images, locs, size, proposal=proposal)
        states.append(state)
        patch = ops.focus_boxes(locs.clamp(0, 1), size, hw)[:, 1:].to(images.device)
        first = has & (covered_at == 0) & contains(patch, centres)
        covered_at[first] = t
        read_c |= first & (state.logits.argmax(1) == labels)
        read_p |= first & (model.aux_logits(state).argmax(1) == labels)
    correct = states[-1].logits.argmax(1) == labels
    oracle = correct.clone()
    missed = has & (covered_at == 0)
    if missed.any():
        # the same episode with its last patch on the object: what covering it would be worth
        rows = missed.nonzero().squeeze(1)
        last = states[-2].select(rows)
        proposal = model.propose(last, size)
        locs = centred_locations(centres[rows], size, hw)
        oracle[rows] = model.focus(last, images, locs, size, proposal=proposal).logits.argmax(1) == labels[rows]
    counts.add(correct=correct, has_object=has, covered_at=covered_at, read_by_classifier=read_c,
               read_by_patch=read_p, oracle_correct=oracle)


@torch.no_grad()
def _budget_batch(model, images: Tensor, labels: Tensor, boxes: list[Tensor], thresholds, counts: _Counts) -> None:
    """The patches each sample saw before the thresholds let it exit."""
    cfg, hw = model.config, _image_hw(images)
    centres, has = object_centres(boxes, images.device)
    out = predict_from(model, ImageBatch(images), thresholds)
    covered_at = torch.zeros(len(labels), dtype=torch.int64, device=images.device)
    read = torch.zeros(len(labels), dtype=torch.bool, device=images.device)
    for t in range(1, cfg.T):
        ran = out.sizes[:, t] > 0
        for side in cfg.patch_sizes:
            rows = (ran & (out.sizes[:, t] == side)).nonzero().squeeze(1)
            if len(rows) == 0:
                continue
            patch = ops.focus_boxes(out.locs[rows, t].clamp(0, 1).cpu(), side, hw)[:, 1:].to(images.device)
            first = has[rows] & (covered_at[rows] == 0) & contains(patch, centres[rows])
            covered_at[rows[first]] = t
            read[rows[first]] = out.step_pred[rows[first], t] == labels[rows[first]]
    counts.add(correct=out.pred == labels, has_object=has, covered_at=covered_at, read_by_classifier=read,
               macs=out.macs)


def error_budget(model, batches, *, thresholds=None, sizes=None, device="cpu", progress=None) -> dict:
    """The error budget of `model` over `batches` (dicts with "images", "labels", "boxes"):
    {"sizes": {size: summary with every step run at that size}, "thresholds": summary at
    `thresholds` (when given)}. See the module docstring for the definitions."""
    cfg = model.config
    sizes = list(cfg.patch_sizes if sizes is None else sizes)
    unknown = [s for s in sizes if s not in cfg.patch_sizes]
    if unknown:
        raise ValueError(f"sizes: {unknown} are not among the model's patch sizes {list(cfg.patch_sizes)}")
    if thresholds is not None:
        thresholds.check_fits(cfg.T, cfg.patch_sizes)
    was_training = model.training
    model.eval()
    per_size = {size: _Counts() for size in sizes}
    budget = _Counts()
    try:
        for batch in batches:
            images, labels = batch["images"].to(device), batch["labels"].to(device)
            for size in sizes:
                _anytime_batch(model, images, labels, batch["boxes"], size, per_size[size])
            if thresholds is not None:
                _budget_batch(model, images, labels, batch["boxes"], thresholds, budget)
            if progress is not None:
                progress.update(1)
    finally:
        model.train(was_training)
    report = {"sizes": {str(size): counts.summary() for size, counts in per_size.items()}}
    if thresholds is not None:
        report["thresholds"] = {"budget": thresholds.budget, **budget.summary()}
    return report


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_markdown(report: dict) -> str:
    """The error budget as one markdown table: a row per patch size, and one at the thresholds."""
    head = ("| run | accuracy (95% CI) | covered | read when covered (f_C) | read when covered (patch alone) | "
            + " | ".join(f"errors: {BUCKET_TITLES[b]}" for b in BUCKETS)
            + " | if all covered | if covered read |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    rows = [(f"every step at {size} px", entry) for size, entry in report["sizes"].items()]
    if "thresholds" in report:
        entry = report["thresholds"]
        budget = entry.get("budget")
        name = "thresholds" + (f" for {budget / 1e6:.0f}M" if budget else "")
        rows.append((f"{name} ({entry.get('avg_macs', 0) / 1e6:.1f}M MACs)", entry))
    for name, entry in rows:
        low, high = entry["accuracy_ci95"] or (float("nan"), float("nan"))
        lines.append(f"| {name} | {_pct(entry['accuracy'])} [{_pct(low)}, {_pct(high)}] | {_pct(entry['coverage'])} | "
                     f"{_pct(entry['read_when_covered'])} | "
                     f"{_pct(entry['patch_read_when_covered'])} | "
                     + " | ".join(str(entry["errors"][b]) for b in BUCKETS)
                     + f" | {_pct(entry['accuracy_if_all_covered'])} | {_pct(entry['accuracy_if_covered_read'])} |")
    return "\n".join(lines)
