"""The inference form of a GFNet: BatchNorm folded into the convolutions, and on the CPU the
encoders' weights channels-last.

In eval mode a BatchNorm is a per-channel affine map, so it can be folded into the weights and
bias of the convolution before it (`torch.nn.utils.fusion.fuse_conv_bn_eval`), as onnxruntime
does when it loads our export. With channels-last weights the CPU convolutions (oneDNN) run,
and hand each other, channels-last activations, the layout their depthwise kernels prefer.
Measured on ImageNet EfficientNet-Lite0, 2 threads: f_G at 256 px 18.5 -> 10.0 ms per glance
(batch 1), f_L at 96 px 8.3 -> 5.0 ms (batch 1) and 3.2 -> 1.5 ms per patch (batch 32); folding
or the layout alone gives a third to a half of that. The arithmetic is the same up to float
rounding.

A pair is folded where the convolution and the BatchNorm are consecutive children of one
module, the order in which the encoders we build (torchvision Sequentials and blocks, timm's
EfficientNet blocks) run them. Because registration order is not a promise of execution order
in general, `inference_copy` checks each folded encoder against the original on a probe
batch, and keeps the original (with a warning) where the fold changed its outputs.
"""
from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Folding reorders float arithmetic; outputs of the encoders we build move by ~1e-5 relative
# (measured on ImageNet EfficientNet-Lite0). A misplaced fold moves them by O(1).
PROBE_TOLERANCE = 1e-3


def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every BatchNorm2d that directly follows a Conv2d among the children of one
    module. A BatchNorm with an activation attached (timm's BatchNormAct2d) leaves that
    activation in its place. Returns the number of pairs folded. `module` must be in eval mode."""
    if module.training:
        raise ValueError("module is in training mode; BatchNorm folds only with its running statistics (eval)")
    folded = 0
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if _foldable(conv, norm):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(parent, norm_name, _what_follows_the_norm(norm))
                folded += 1
    return folded


def inference_copy(model):
    """A copy of `model` (a GFNet in eval mode) for prediction only: BatchNorm folded into both
    encoders, each checked against the original on a probe batch at its input sizes, and on the
    CPU their weights channels-last. The copy cannot be saved (its weights no longer match the
    checkpoint's layout)."""
    if model.training:
        raise ValueError("model is in training mode; call model.eval() first")
    cfg = model.config
    fast = copy.deepcopy(model)  # the encoders' memos stay behind (Backbone.__getstate__)
    for name, sizes in (("global_encoder", [cfg.glance_size]), ("local_encoder", list(cfg.focus_input_sizes))):
        setattr(fast, name, _checked_fold(getattr(model, name), getattr(fast, name), sizes, name))
    fast.inference_only = True
    return fast


def inference_encoder(encoder: nn.Module, sizes: list[int], name: str = "encoder") -> nn.Module:
    """`inference_copy` for one encoder in eval mode (a frozen f_G encoding many glances): a copy
    with BatchNorm folded, checked on probes of these input sizes, channels-last on the CPU."""
    if encoder.training:
        raise ValueError(f"{name} is in training mode; call eval() first")
    return _checked_fold(encoder, copy.deepcopy(encoder), sizes, name)


def _checked_fold(original: nn.Module, copied: nn.Module, sizes: list[int], name: str) -> nn.Module:
    """`copied` (a copy of `original`) with BatchNorm folded, or `original`'s copy unfolded where the
    fold changed the outputs on probes; channels-last on the CPU."""
    error = _relative_change(original, copied, sizes) if fold_batchnorm(copied) else 0.0
    if not error <= PROBE_TOLERANCE:
        warnings.warn(f"{name}: folding BatchNorm changed its output by {error:.2e} (relative), so this "
                      f"encoder does not run its layers in registration order; it runs unfolded", stacklevel=3)
        copied = copy.deepcopy(original)
    if next(original.parameters()).device.type == "cpu":
        copied.to(memory_format=torch.channels_last)
    return copied


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (type(conv) in (nn.Conv2d, *_same_padding_convs()) and isinstance(norm, nn.BatchNorm2d)
            and norm.track_running_stats and norm.affine and conv.out_channels == norm.num_features)


@functools.cache
def _same_padding_convs() -> tuple[type, ...]:
    # timm's Conv2dSame pads in forward() and then runs nn.Conv2d's convolution: its weights
    # fold like a plain convolution's, and fuse_conv_bn_eval keeps the class (deep copy).
    try:
        from timm.layers import Conv2dSame
    except ImportError:
        return ()
    return (Conv2dSame,)


def _what_follows_the_norm(norm: nn.BatchNorm2d) -> nn.Module:
    # timm's BatchNormAct2d is batch_norm, then self.drop, then self.act.
    parts = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None]
    return nn.Sequential(*parts) if parts else nn.Identity()


def _relative_change(original: nn.Module, folded: nn.Module, sizes: list[int]) -> float:
    """The largest change of either output (map, pooled vector) on random probes, relative to
    the output's largest magnitude (at least 1)."""
    generator = torch.Generator().manual_seed(0)
    parameter = next(original.parameters())
    worst = 0.0
    with torch.inference_mode():
        for size in sizes:
            probe = torch.randn((2, 3, size, size), generator=generator).to(parameter.device, parameter.dtype)
            for want, got in zip(original._encode(probe), folded._encode(probe)):
                scale = want.abs().amax().clamp_min(1.0)
                worst = max(worst, ((want - got).abs().amax() / scale).item())
    return worst
