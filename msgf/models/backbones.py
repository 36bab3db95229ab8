"""Encoders built by torchvision name: the last feature map and its pooled vector.

Each torchvision family keeps its convolutional trunk and its classification head under
different attribute names; `_FAMILIES` records where, so one wrapper serves them all. Weights
are never downloaded: models are built with `weights=None` and may load a local torchvision
state dict (its head, which we drop, may have any number of classes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torchvision
from torch import nn


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
    raise ValueError(f"backbone {name!r} is not supported; supported families: {sorted(_FAMILIES)}")


def available_backbones() -> list[str]:
    """torchvision classification model names that `build_backbone` accepts."""
    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(n for n in names if any(n.startswith(p) for p in _FAMILIES))


def default_classifier(name: str) -> str:
    """The paper's classifier f_C for this backbone: "gru" or "fc" (linear cascade)."""
    return _FAMILIES[_family_of(name)].default_classifier


class Backbone(nn.Module):
    """A torchvision trunk returning (feature map (N, D, h, w), pooled vector (N, D))."""

    def __init__(self, name: str, weights: str | os.PathLike | None = None):
        super().__init__()
        family = _FAMILIES[_family_of(name)]
        if name not in available_backbones():
            raise ValueError(f"backbone {name!r} is not a torchvision classification model")
        model = torchvision.models.get_model(name, weights=None)
        head = getattr(model, family.head)
        if weights is not None:
            _load_trunk_weights(model, weights, family.head)
        self.name = name
        self.feature_dim = _out_features_in(head)
        self.trunk = family.trunk(model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.trunk(x)
        return fmap, torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)


def build_backbone(name: str, weights: str | os.PathLike | None = None) -> Backbone:
    """The encoder `name` with fresh weights, or those of a local torchvision state dict."""
    if not isinstance(name, str):
        raise TypeError(f"backbone must be a torchvision model name, got {type(name).__name__}")
    return Backbone(name, weights)


def _out_features_in(head: nn.Module) -> int:
    # The pooled vector is the input of the head's first linear layer.
    linear = head if isinstance(head, nn.Linear) else next(m for m in head.modules() if isinstance(m, nn.Linear))
    return linear.in_features


def _read_state_dict(path: str | os.PathLike, head: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise ValueError(f"weights file {os.fspath(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {os.fspath(path)!r} does not hold a state dict")
    return {k: v for k, v in state.items() if not k.startswith(head + ".")}


def _load_trunk_weights(model: nn.Module, path: str | os.PathLike, head: str) -> None:
    # Every trunk tensor must come from the file; only the head may be absent or differ.
    state = _read_state_dict(path, head)
    expected = {k for k in model.state_dict() if not k.startswith(head + ".")}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(
            f"weights file {os.fspath(path)!r} does not match {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"weights file {os.fspath(path)!r} does not fit {type(model).__name__}: {err}") from None
