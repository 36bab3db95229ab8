"""One file per trained model: weights, every setting to rebuild it, its MACs table and the
exit thresholds searched for it (design.md section 4).

The payload holds only dicts, lists, tensors, str, int, float, bool and None, so it loads with
`torch.load(weights_only=True)`. A SHA-256 digest over config, tables and tensor bytes catches
files edited after writing; the format version catches files from another layout.
"""
from __future__ import annotations

import hashlib
import json
import os

import torch

from msgf.atomic import atomic_save

FORMAT = "msgf-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a usable msgf checkpoint (wrong format or version, damaged, tampered)."""


def save_checkpoint(model, path: str | os.PathLike, **extra) -> None:
    """Write `model` (a GFNet) with its config, MACs table and thresholds to `path` atomically.

    extra: anything else to keep (epoch, optimizer state, metrics...), made of plain values
    and tensors only; read it back with `read_checkpoint(path)["extra"]`.
    """
    from msgf.models.gfnet import GFNet

    if not isinstance(model, GFNet):
        raise TypeError(f"model must be a GFNet, got {type(model).__name__}")
    if model.inference_only:
        raise ValueError("model is an inference copy (BatchNorm folded into the convolutions, "
                         "msgf.models.inference); save the model it was made from")
    for key, value in extra.items():
        _check_plain(value, f"extra[{key!r}]")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-safe
        "config": model.config.to_dict(),
        "macs_per_step": model.macs_per_step(),
        "thresholds": [t.to_dict() for t in model.exit_thresholds],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra),
    }
    payload["digest"] = _digest(payload)
    atomic_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The verified payload: format, config, macs_per_step, thresholds, state_dict, extra."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged zip, truncated file, disallowed pickled objects
        raise CheckpointError(f"{path}: not a readable msgf checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an msgf checkpoint (no '{FORMAT}' format marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}, this msgf reads version "
                              f"{FORMAT_VERSION}; re-export it with a matching msgf")
    if payload.get("digest") != _digest(payload):
        raise CheckpointError(f"{path}: content does not match its digest; the file was modified or damaged "
                              f"after it was written")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """The GFNet saved at `path`, in eval mode, with its MACs table and thresholds restored."""
    from msgf.engine.thresholds import Thresholds
    from msgf.models.config import GFConfig
    from msgf.models.gfnet import GFNet

    payload = read_checkpoint(path)
    try:
        # Built on the meta device and given the loaded tensors (assign=True), so the weights
        # exist once in memory, not twice: this halves the loading peak of large backbones.
        with torch.device("meta"):
            model = GFNet(GFConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"], strict=True, assign=True)
        missing = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if missing:
            raise ValueError(f"no saved values for {missing[:3]}")
        model.set_macs_cache(payload["macs_per_step"])
        model.exit_thresholds = [Thresholds.from_dict(t) for t in payload["thresholds"]]
        for thresholds in model.exit_thresholds:
            thresholds.check_fits(model.config.T, model.config.patch_sizes)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{os.fspath(path)}: cannot rebuild the model ({err})") from None
    return model.to(map_location).eval()


def update_thresholds(path: str | os.PathLike, thresholds) -> None:
    """Add thresholds to a checkpoint in place (atomically), replacing any for the same budget."""
    from msgf.engine.thresholds import Thresholds

    items = [thresholds] if isinstance(thresholds, Thresholds) else list(thresholds)
    if not all(isinstance(t, Thresholds) and t.budget is not None for t in items):
        raise TypeError("thresholds must be msgf.engine.Thresholds with a budget")
    payload = read_checkpoint(path)
    config = payload["config"]
    for t in items:
        t.check_fits(config["T"], config["patch_sizes"])
    budgets = [t.budget for t in items]
    kept = [d for d in payload["thresholds"] if not any(_same_budget(d["budget"], b) for b in budgets)]
    payload["thresholds"] = kept + [t.to_dict() for t in items]
    payload["digest"] = _digest(payload)
    atomic_save(payload, path)


def _same_budget(a, b) -> bool:
    return a is not None and abs(a - b) <= 1e-6 * max(abs(a), abs(b))


def _digest(payload: dict) -> str:
    """SHA-256 over everything but the digest: JSON of the plain parts, raw bytes of tensors."""
    sha = hashlib.sha256()

    def feed(value) -> object:
        # Tensors are hashed in place and replaced by a marker in the JSON skeleton.
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            sha.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            sha.update(tensor.reshape(-1).view(torch.uint8).numpy())  # hashed in place, no copy
            return "<tensor>"
        if isinstance(value, dict):
            return {str(k): feed(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        if isinstance(value, (list, tuple)):
            return [feed(v) for v in value]
        return value

    skeleton = feed({k: v for k, v in payload.items() if k != "digest"})
    sha.update(json.dumps(skeleton, sort_keys=True).encode())
    return sha.hexdigest()


def _check_plain(value, name: str) -> None:
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{name} has a key of type {type(k).__name__}; use str or int keys")
            _check_plain(v, f"{name}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{name}[{i}]")
        return
    raise TypeError(f"{name} is a {type(value).__name__}; checkpoints hold only plain values and tensors "
                    f"(so they load with torch.load(weights_only=True))")
