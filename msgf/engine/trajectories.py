"""Trajectory export: every sample through the whole tree of patch-size choices.

For threshold search (issue 6, `threshold_search/README.md`): T levels, level t holding
K^(t-1) nodes in level order; the path of size indices (k_2, ..., k_t) sits at
offset_t + sum_j k_j K^(t-j), offset_t = sum_{s<t} K^(s-1). Shared prefixes are computed once:
a level's states are expanded by every size and kept only until the next level is built, so
memory is O(batch * K^(T-2)) whatever the dataset size.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from msgf.engine.npz_stream import NpzStreamWriter
from msgf.models.state import cat_states


@dataclass(frozen=True)
class ExportSummary:
    """What was written, and the measured latency in seconds per image of each step kind
    ("glance" and each patch size), averaged over the export (device-synchronised on CUDA)."""

    path: str
    num_samples: int
    num_nodes: int
    latency_s: dict


def level_offset(t: int, K: int) -> int:
    return sum(K ** (s - 1) for s in range(1, t))


def node_macs(model) -> np.ndarray:
    """Cumulative MACs (M,) of the path ending at each node, in level order."""
    cfg = model.config
    K = cfg.num_sizes
    macs = [float(model.step_macs(1))]
    for t in range(2, cfg.T + 1):
        start = level_offset(t - 1, K)
        for child in range(K ** (t - 1)):
            macs.append(macs[start + child // K] + model.step_macs(t, cfg.patch_sizes[child % K]))
    return np.asarray(macs, dtype=np.float64)


LOCATIONS = ("policy", "random")


def export_trajectories(model, batches: Iterable, path: str | os.PathLike, *, entropy: bool = True,
                        progress: bool = True, total: int | None = None, locations: str = "policy",
                        seed: int = 0) -> ExportSummary:
    """Write the trajectory `.npz` of every sample in `batches` to `path` (atomically).

    batches yields dicts with "images" and "labels" (as `msgf.data.collate_batch` makes) or
    (images, labels) pairs, on any device (images go to the model's). The model must be in eval mode.

    locations="policy" crops every focus patch where pi's mean points (what inference does);
    "random" crops it at a location drawn uniformly in [0,1]^2 for each sample at each node,
    from a torch.Generator seeded by `seed` (the paper's "random patch" ablation; the same
    batches and seed give the same file). Costs are the model's either way, so the two
    files compare at equal budgets.
    """
    cfg = model.config
    if model.training:
        raise ValueError("model is in training mode; call model.eval() first")
    if locations not in LOCATIONS:
        raise ValueError(f"locations must be one of {LOCATIONS}, got {locations!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    generator = None
    if locations == "random":
        generator = torch.Generator()
        generator.manual_seed(seed)
    num_nodes = level_offset(cfg.T + 1, cfg.num_sizes)
    # Batches come from a loader on the host; the model may be on a GPU (training's export).
    device = next(model.parameters()).device
    timer = _StepTimer(cfg.patch_sizes)
    count = 0
    if total is None and hasattr(batches, "__len__"):
        total = len(batches)
    with NpzStreamWriter(path) as writer, torch.inference_mode():
        for batch in tqdm(batches, total=total, desc="trajectories", unit="batch", disable=not progress):
            images, labels = _unpack(batch)
            levels = _run_tree(model, images.to(device, non_blocking=True), timer, generator)
            labels_np = labels.cpu().numpy().astype(np.int64)
            logits = torch.cat([lv.permute(1, 0, 2) for lv in levels], dim=1)  # (B, M, C)
            _append_nodes(writer, logits, labels_np, entropy)
            count += labels_np.shape[0]
        if count == 0:
            raise ValueError("batches yielded no samples")
        writer.finish({"sizes": np.asarray(cfg.patch_sizes, dtype=np.int64), "T": np.int64(cfg.T),
                       "macs": node_macs(model)})
    return ExportSummary(os.fspath(path), count, num_nodes, timer.per_image())


def _run_tree(model, images, timer: "_StepTimer", generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Logits of every node, per level: (nodes in level, B, C). With a generator, focus
    locations are drawn from it (uniform in [0,1]^2) instead of taken from pi's mean."""
    cfg = model.config
    K = cfg.num_sizes
    state = timer.time("glance", len(images), lambda: model.glance(images))
    batch = len(state)
    levels = [state.logits.float()[None]]
    for t in range(2, cfg.T + 1):
        parents = len(state) // batch
        children = []
        for size in cfg.patch_sizes:
            def step(parent=state, size=size):
                proposal = model.propose(parent, size)  # also carries pi's recurrent state on
                where = proposal.mean if generator is None else \
                    torch.rand((len(parent), 2), generator=generator).to(proposal.mean)
                return model.focus(parent, images, where, size, proposal=proposal)
            children.append(timer.time(size, len(state), step))
        # children[k] rows are (parent p, sample i); level order wants (p, k, i).
        logits = torch.stack([c.logits.float().view(parents, batch, -1) for c in children], dim=1)
        levels.append(logits.reshape(parents * K, batch, -1))
        if t < cfg.T:
            order = torch.arange(K * parents * batch).view(K, parents, batch).transpose(0, 1).reshape(-1)
            state = cat_states(children).select(order.to(state.index.device))
    return levels


def _append_nodes(writer: NpzStreamWriter, logits: torch.Tensor, labels: np.ndarray, entropy: bool) -> None:
    log_probs = torch.log_softmax(logits, dim=-1)
    conf, pred = log_probs.exp().max(dim=-1)
    pred_np = pred.cpu().numpy().astype(np.int64)
    writer.append("labels", labels)
    writer.append("conf", conf.cpu().numpy().astype(np.float32))
    writer.append("pred", pred_np)
    writer.append("correct", pred_np == labels[:, None])
    if entropy:
        # Each term -p log p is >= 0; the clamp only removes float round-off below zero.
        ent = (-(log_probs.exp() * log_probs).sum(dim=-1)).clamp_min(0.0)
        writer.append("entropy", ent.cpu().numpy().astype(np.float32))


def _unpack(batch):
    if isinstance(batch, dict):
        images, labels = batch["images"], batch["labels"]
    else:
        images, labels = batch
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise ValueError(f"labels must be (N,) integers matching the {images.shape[0]} images")
    return images, labels


class _StepTimer:
    def __init__(self, sizes):
        self.seconds = {"glance": 0.0, **{s: 0.0 for s in sizes}}
        self.images = dict.fromkeys(self.seconds, 0)

    def time(self, key, images: int, run):
        start = time.perf_counter()
        out = run()
        if out.logits.is_cuda:
            torch.cuda.synchronize(out.logits.device)
        self.seconds[key] += time.perf_counter() - start
        self.images[key] += images
        return out

    def per_image(self) -> dict:
        return {str(k): self.seconds[k] / self.images[k] for k in self.seconds if self.images[k]}
