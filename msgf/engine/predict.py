"""Budgeted inference: every sample stops at the first step where Eq. 9 says so.

The batch shrinks as it goes: exited samples leave, the rest are grouped by their next patch
size and cropped in one `crop_resize` call (inside `model.focus`). In eval mode a sample's
route does not depend on which other samples share its batch: matrix products of other batch
shapes may round differently in the last bit, nothing more.

Where the pixels come from is an *image source* with `glance(model)` and
`focus(model, state, proposal, sides)`, both returning the model's next GFState: `ImageBatch`
here for a decoded batch in memory, `msgf.engine.regions.RegionSource` for region readers over
files too large to decode. `predict_from` runs the exit rule over any source.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from msgf.engine.thresholds import EXIT, Thresholds


@dataclass(frozen=True)
class Predictions:
    """Per sample: prediction and confidence at its exit step (1-based), sizes (N, T) of the
    inputs it saw (the glance size at t=1, 0 where a step was not run), locations (N, T, 2)
    (row, col) in [0, 1] (NaN for the glance and for steps not run), exact MACs spent, the
    exit logits, and the prediction / confidence after every step run (N, T) (-1 / NaN after
    the exit step)."""

    pred: Tensor
    conf: Tensor
    exit_step: Tensor
    sizes: Tensor
    locs: Tensor
    macs: Tensor
    logits: Tensor
    step_pred: Tensor
    step_conf: Tensor


@dataclass(frozen=True)
class Anytime:
    """Every sample run for all T steps at one patch size: pred/conf/logits per step (N, T, ...),
    locs (N, T, 2) and cumulative MACs (T,) of stopping after step t."""

    pred: Tensor
    conf: Tensor
    locs: Tensor
    macs: Tensor
    logits: Tensor


class ImageBatch:
    """The in-memory image source: a decoded batch that the model crops itself (msgf.ops)."""

    def __init__(self, images: Tensor):
        self.images = images

    def glance(self, model):
        return model.glance(self.images)

    def focus(self, model, state, proposal, sides: Tensor):
        return model.focus(state, self.images, proposal.mean, sides, proposal=proposal)


def predict(model, images: Tensor, thresholds: Thresholds) -> Predictions:
    """Run `images` through `model` with early exits decided by `thresholds` (paper Eq. 9)."""
    return predict_from(model, ImageBatch(images), thresholds)


def predict_from(model, source, thresholds: Thresholds) -> Predictions:
    """`predict` over an image source (see the module docstring): the same exits, any pixels."""
    cfg = _check(model, thresholds)
    thresholds.check_fits(cfg.T, cfg.patch_sizes)
    with torch.inference_mode():
        state = source.glance(model)
        n = len(state)
        out = _Record(n, cfg, model, state.logits)
        out.step(state, size_index=None, locs=None)
        while True:
            choice = thresholds.next_size_index(state.step, state.confidence).to(state.index.device)
            out.finish(state, choice == EXIT)
            going = choice != EXIT
            if not going.any():
                break
            state, choice = state.select(going), choice[going]
            sides = torch.tensor(cfg.patch_sizes, device=choice.device)[choice]
            proposal = model.propose(state, sides)
            state = source.focus(model, state, proposal, sides)
            out.step(state, size_index=choice, locs=proposal.mean)
    return out.predictions()


def anytime(model, images: Tensor, size: int | None = None) -> Anytime:
    """Run every sample for exactly T steps with focus patches of side `size` (default: the
    only patch size) and report the prediction after each step t = 1..T."""
    cfg = _check(model, None)
    if size is None:
        if cfg.num_sizes != 1:
            raise ValueError(f"size must be given for a model with several patch sizes {list(cfg.patch_sizes)}")
        size = cfg.patch_sizes[0]
    if size not in cfg.patch_sizes:
        raise ValueError(f"size must be one of {list(cfg.patch_sizes)}, got {size!r}")
    with torch.inference_mode():
        state = model.glance(images)
        steps, locs = [state], [torch.full((len(state), 2), float("nan"), device=state.logits.device)]
        for _ in range(cfg.T - 1):
            proposal = model.propose(state, size)
            state = model.focus(state, images, proposal.mean, size, proposal=proposal)
            steps.append(state)
            locs.append(proposal.mean.float())
    macs = torch.tensor([model.path_macs([size] * t) for t in range(cfg.T)], dtype=torch.int64)
    return Anytime(pred=torch.stack([s.logits.argmax(1) for s in steps], 1),
                   conf=torch.stack([s.confidence for s in steps], 1), locs=torch.stack(locs, 1), macs=macs,
                   logits=torch.stack([s.logits.float() for s in steps], 1))


def _check(model, thresholds):
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "glance"):
        raise TypeError(f"model must be a GFNet, got {type(model).__name__}")
    if model.training:
        raise ValueError("model is in training mode; call model.eval() first (BatchNorm would use batch "
                         "statistics, so a sample's result would depend on its batch)")
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise TypeError(f"thresholds must be msgf.engine.Thresholds, got {type(thresholds).__name__}")
    return cfg


class _Record:
    """Per-sample results filled in as samples take steps and exit."""

    def __init__(self, n: int, cfg, model, like: Tensor):
        device = like.device
        self.cfg = cfg
        self.pred = torch.zeros(n, dtype=torch.int64, device=device)
        self.conf = torch.zeros(n, dtype=torch.float32, device=device)
        self.exit_step = torch.zeros(n, dtype=torch.int64, device=device)
        self.sizes = torch.zeros((n, cfg.T), dtype=torch.int64, device=device)
        self.locs = torch.full((n, cfg.T, 2), float("nan"), dtype=torch.float32, device=device)
        self.macs = torch.zeros(n, dtype=torch.int64, device=device)
        self.logits = torch.zeros((n, cfg.num_classes), dtype=torch.float32, device=device)
        self.step_pred = torch.full((n, cfg.T), -1, dtype=torch.int64, device=device)
        self.step_conf = torch.full((n, cfg.T), float("nan"), dtype=torch.float32, device=device)
        # step_cost[t - 1][k]: MACs of step t at size k (the glance uses column 0).
        self.step_cost = torch.tensor(
            [[model.step_macs(1)] * cfg.num_sizes] +
            [[model.step_macs(t, s) for s in cfg.patch_sizes] for t in range(2, cfg.T + 1)],
            dtype=torch.int64, device=device)

    def step(self, state, size_index: Tensor | None, locs: Tensor | None) -> None:
        rows, t = state.index, state.step
        self.step_pred[rows, t - 1] = state.logits.argmax(1)
        self.step_conf[rows, t - 1] = state.confidence
        if size_index is None:
            self.sizes[rows, 0] = self.cfg.glance_size
            self.macs[rows] += self.step_cost[0, 0]
            return
        self.sizes[rows, t - 1] = torch.tensor(self.cfg.patch_sizes, device=rows.device)[size_index]
        self.locs[rows, t - 1] = locs.float()
        self.macs[rows] += self.step_cost[t - 1, size_index]

    def finish(self, state, done: Tensor) -> None:
        rows = state.index[done]
        self.pred[rows] = state.logits[done].argmax(1)
        self.conf[rows] = state.confidence[done]
        self.exit_step[rows] = state.step
        self.logits[rows] = state.logits[done].float()

    def predictions(self) -> Predictions:
        return Predictions(self.pred, self.conf, self.exit_step, self.sizes, self.locs, self.macs, self.logits,
                           self.step_pred, self.step_conf)
