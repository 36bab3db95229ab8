"""What one glance or focus step hands to the next: plain per-sample tensors.

Every tensor field has the samples on its first dimension, so a subset of the batch is just
`state.select(rows)`. Training and the engine read these fields; nothing else is hidden.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class GFState:
    """The model after `step` steps (1 = the glance) for B samples.

    index: (B,) rows of the image batch these samples come from.
    logits, confidence: (B, C) classifier output p_t before softmax, and max softmax (B,).
    features: (B, D) pooled encoder feature e_t of this step (input of the auxiliary head FC_t).
    feature_map: (B, D, S, S) encoder feature map of this step, bilinearly resized to the
        largest map side S over all input sizes: what the policy reads to place the next patch.
    size_index: (B,) which input this step saw: 0 = glance, k + 1 = patch_sizes[k].
    classifier_memory: (B, H) GRU hidden state, (B, step * D) concatenated features ("fc"), or
        (B, 2 D) the glance feature and the maximum of the focus features ("max").
    policy_hidden: (B, Hp) the policy's state: its GRU's hidden state (and, for the "spatial"
        head, the glance's cell scores and offsets and the image size).
    """

    step: int
    index: Tensor
    logits: Tensor
    confidence: Tensor
    features: Tensor
    feature_map: Tensor
    size_index: Tensor
    classifier_memory: Tensor
    policy_hidden: Tensor

    def __len__(self) -> int:
        return self.index.shape[0]

    def select(self, rows: Tensor) -> "GFState":
        """The samples at `rows` (bool mask or integer indices, repeats allowed)."""
        return _select(self, rows)

    @property
    def probs(self) -> Tensor:
        return torch.softmax(self.logits.float(), dim=-1)


@dataclass(frozen=True)
class Proposal:
    """The policy's next-location distribution for B samples and their chosen next sizes.

    mean: (B, 2) location (row, col) in [0, 1]; value: (B,) critic estimate;
    next_size_index: (B,) index into patch_sizes; hidden: (B, Hp) policy state after it.
    """

    mean: Tensor
    value: Tensor
    next_size_index: Tensor
    hidden: Tensor
    std: float

    def __len__(self) -> int:
        return self.mean.shape[0]

    def distribution(self) -> torch.distributions.Distribution:
        """Independent Gaussian over (row, col): `log_prob(locs)` is (B,)."""
        normal = torch.distributions.Normal(self.mean, torch.full_like(self.mean, self.std))
        return torch.distributions.Independent(normal, 1)

    def select(self, rows: Tensor) -> "Proposal":
        return _select(self, rows)


def _select(obj, rows: Tensor):
    if not isinstance(rows, Tensor):
        raise TypeError(f"rows must be a bool mask or integer tensor, got {type(rows).__name__}")
    if rows.dtype == torch.bool:
        if rows.shape != (len(obj),):
            raise ValueError(f"rows mask must have shape ({len(obj)},), got {tuple(rows.shape)}")
        rows = rows.nonzero().squeeze(1)
    elif rows.is_floating_point() or rows.dim() != 1:
        raise TypeError("rows must be a 1-D bool mask or integer tensor")
    tensors = {f.name: getattr(obj, f.name)[rows] for f in fields(obj) if isinstance(getattr(obj, f.name), Tensor)}
    return replace(obj, **tensors)


def cat_states(states: list[GFState]) -> GFState:
    """The samples of several states taken at the same step, one after another."""
    if not states or len({s.step for s in states}) != 1:
        raise ValueError("states must be a non-empty list of states at the same step")
    tensors = {f.name: torch.cat([getattr(s, f.name) for s in states]) for f in fields(GFState) if f.name != "step"}
    return GFState(step=states[0].step, **tensors)
