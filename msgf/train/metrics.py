"""Validation during training: accuracy at every step t and the policy's hit rate.

Accuracy is measured per patch size (every focus step at that size, as `engine.anytime`)
with two sources of locations side by side: the policy's means (what inference uses) and
uniformly random locations (what stage I trains on). The *hit rate* is the fraction of focus
patches that overlap an annotated object box, over samples that have one. The *repeat rate*
is the fraction of focus patches (from the second one on) that cover at least half of the
same pixels as an earlier patch of the episode: a repeated patch is a wasted step.
"""
from __future__ import annotations

import torch
from torch import Tensor

from msgf import ops


def patch_hits(locs: Tensor, size: int, image_hw: tuple[int, int], boxes: list[Tensor]) -> Tensor:
    """(B,) bool: does the patch of side `size` at location `locs[b]` overlap any box of sample b?

    Overlap means an intersection of positive area. The patch is placed exactly as the crop is
    (ops.focus_boxes: top = floor(row * (H - P)), left = floor(col * (W - P))).
    """
    patch = ops.focus_boxes(locs.detach().float().clamp(0, 1).cpu(), size, image_hw)[:, 1:]
    hits = torch.zeros(len(boxes), dtype=torch.bool)
    for b, sample_boxes in enumerate(boxes):
        if len(sample_boxes) == 0:
            continue
        x0 = torch.maximum(patch[b, 0], sample_boxes[:, 0])
        y0 = torch.maximum(patch[b, 1], sample_boxes[:, 1])
        x1 = torch.minimum(patch[b, 2], sample_boxes[:, 2])
        y1 = torch.minimum(patch[b, 3], sample_boxes[:, 3])
        hits[b] = bool(((x1 > x0) & (y1 > y0)).any())
    return hits


def repeats_earlier(patch: Tensor, earlier: list[Tensor]) -> Tensor:
    """(B,) bool: does each (x0, y0, x1, y1) row of `patch` share at least half of its area
    with the patch of the same row in any of `earlier`?"""
    repeated = torch.zeros(len(patch), dtype=torch.bool)
    area = (patch[:, 2] - patch[:, 0]) * (patch[:, 3] - patch[:, 1])
    for other in earlier:
        width = (torch.minimum(patch[:, 2], other[:, 2]) - torch.maximum(patch[:, 0], other[:, 0])).clamp(min=0)
        height = (torch.minimum(patch[:, 3], other[:, 3]) - torch.maximum(patch[:, 1], other[:, 1])).clamp(min=0)
        repeated |= width * height >= 0.5 * area
    return repeated


def image_hw(images: Tensor) -> tuple[int, int]:
    return (images.shape[1], images.shape[2]) if images.dtype == torch.uint8 else (images.shape[2], images.shape[3])


class StepTally:
    """Sums of correct predictions per (size, source, step) and hits per (size, source, focus step)."""

    def __init__(self, T: int, sizes: tuple[int, ...]):
        self.T, self.sizes = T, tuple(sizes)
        # [size][source] -> (correct per step (T,), hits per focus step (T-1,))
        self.correct = torch.zeros((len(sizes), 2, T), dtype=torch.float64)
        self.hits = torch.zeros((len(sizes), 2, T - 1), dtype=torch.float64)
        self.repeats = torch.zeros((len(sizes), 2, T - 1), dtype=torch.float64)  # step 2's stays 0
        self.count = torch.zeros((), dtype=torch.float64)
        self.with_box = torch.zeros((), dtype=torch.float64)
        # evaluate_steps(per_sample=True): (size, source) -> bool (N, T), correct per sample and step
        self.per_sample: dict[tuple[int, str], Tensor] = {}

    def as_tensor(self) -> Tensor:
        return torch.cat([self.correct.flatten(), self.hits.flatten(), self.repeats.flatten(), self.count[None],
                          self.with_box[None]])

    def load_tensor(self, flat: Tensor) -> None:
        n_c, n_h = self.correct.numel(), self.hits.numel()
        self.correct = flat[:n_c].reshape(self.correct.shape).clone()
        self.hits = flat[n_c:n_c + n_h].reshape(self.hits.shape).clone()
        self.repeats = flat[n_c + n_h:n_c + 2 * n_h].reshape(self.repeats.shape).clone()
        self.count, self.with_box = flat[n_c + 2 * n_h].clone(), flat[n_c + 2 * n_h + 1].clone()

    def summary(self) -> dict:
        n, nb = max(float(self.count), 1.0), float(self.with_box)
        out = {"num_samples": int(self.count), "num_with_box": int(nb), "sizes": {}}
        for k, size in enumerate(self.sizes):
            entry = {}
            for s, source in enumerate(("policy", "random")):
                entry[f"accuracy_{source}"] = (self.correct[k, s] / n).tolist()
                entry[f"hit_rate_{source}"] = (self.hits[k, s] / nb).tolist() if nb else [None] * (self.T - 1)
                entry[f"repeat_rate_{source}"] = (self.repeats[k, s] / n).tolist()
            out["sizes"][str(size)] = entry
        steps = self.correct.mean(0) / n  # mean over sizes: (2, T)
        out["accuracy_policy"] = steps[0].tolist()
        out["accuracy_random"] = steps[1].tolist()
        repeats = self.repeats.mean(0) / n
        out["repeat_rate_policy"], out["repeat_rate_random"] = repeats[0].tolist(), repeats[1].tolist()
        if nb:
            hits = self.hits.mean(0) / nb
            out["hit_rate_policy"], out["hit_rate_random"] = hits[0].tolist(), hits[1].tolist()
        else:
            out["hit_rate_policy"] = out["hit_rate_random"] = [None] * (self.T - 1)
        return out


@torch.no_grad()
def evaluate_steps(model, batches, *, device, generator: torch.Generator, autocast,
                   sources: tuple[str, ...] = ("policy", "random"), progress=None,
                   per_sample: bool = False) -> StepTally:
    """Accuracy per step t and hit rate, per patch size, for policy and/or random locations
    (a source left out keeps zeros). per_sample: also keep which samples each (size, source)
    classified correctly at each step (`StepTally.per_sample`), for paired comparisons."""
    cfg = model.config
    tally = StepTally(cfg.T, cfg.patch_sizes)
    was_training = model.training
    model.eval()
    for batch in batches:
        images, labels = batch["images"].to(device), batch["labels"].to(device)
        boxes = batch["boxes"]
        n, hw = len(labels), image_hw(images)
        tally.count += n
        tally.with_box += sum(1 for b in boxes if len(b))
        with autocast():
            first = model.glance(images)
        correct_first = (first.logits.argmax(1) == labels).double().sum().cpu()
        for k, size in enumerate(cfg.patch_sizes):
            for s, source in enumerate(("policy", "random")):
                if source not in sources:
                    continue
                state, patches = first, []
                tally.correct[k, s, 0] += correct_first
                rows = [(first.logits.argmax(1) == labels).cpu()]
                for t in range(1, cfg.T):
                    with autocast():
                        proposal = model.propose(state, size)
                        if source == "policy":
                            locs = proposal.mean.float()
                        else:
                            locs = torch.rand((n, 2), generator=generator).to(device)
                        state = model.focus(state, images, locs, size, proposal=proposal)
                    rows.append((state.logits.argmax(1) == labels).cpu())
                    tally.correct[k, s, t] += rows[-1].double().sum()
                    tally.hits[k, s, t - 1] += patch_hits(locs, size, hw, boxes).double().sum()
                    patches.append(ops.focus_boxes(locs.detach().float().clamp(0, 1).cpu(), size, hw)[:, 1:])
                    tally.repeats[k, s, t - 1] += repeats_earlier(patches[-1], patches[:-1]).double().sum()
                if per_sample:
                    done = tally.per_sample.get((size, source), torch.zeros((0, cfg.T), dtype=torch.bool))
                    tally.per_sample[(size, source)] = torch.cat([done, torch.stack(rows, 1)])
        if progress is not None:
            progress.update(1)
    model.train(was_training)
    return tally
