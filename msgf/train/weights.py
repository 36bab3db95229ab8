"""The weights a run starts from (a fresh model, or --init's checkpoint) and the copies it keeps."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from msgf.train.presets import TrainConfig


def initial_model(cfg: TrainConfig, splits, init: Path | None, log) -> nn.Module:
    """The model a run starts from, on the host: built from the config (pretrained encoders where
    it says so), or `init`'s checkpoint, which must match the config's backbone, glance, T,
    policy head and the classes of `splits`."""
    from msgf import build_model, load_checkpoint

    # The initial weights are drawn after the validation split (which names the classes) is
    # opened and cached, which draws from the global generator too: keep that order, or the
    # same seed gives other weights than runs before.
    torch.manual_seed(cfg.seed)
    classes = splits.classes()

    def fresh_model():
        return build_model(cfg.backbone, len(classes), cfg.glance_size, cfg.patch_sizes, cfg.T, cfg.classifier,
                           class_names=classes, classifier_hidden=cfg.classifier_hidden,
                           patch_input_sizes=cfg.patch_input_sizes,
                           policy_head=cfg.policy_head, policy_inhibition=cfg.policy_inhibition,
                           policy_inhibition_radius=cfg.policy_inhibition_radius,
                           policy_selection=cfg.policy_selection,
                           policy_channels=cfg.policy_channels, policy_kernel=cfg.policy_kernel,
                           policy_hidden=cfg.policy_hidden,
                           map_stride=cfg.map_stride, glance_to_map=cfg.glance_to_map,
                           pretrained=cfg.pretrained,
                           global_weights=cfg.weights, local_weights=cfg.weights)

    if init is None:
        model = fresh_model()
    else:
        model = load_checkpoint(init)
        got = (model.config.backbone, model.config.glance_size, model.config.T, model.config.policy_head,
               model.config.num_classes)
        want = (cfg.backbone, cfg.glance_size, cfg.T, cfg.policy_head, len(classes))
        if got != want:
            raise ValueError(f"--init checkpoint is (backbone, glance, T, policy head, classes) = {got}, "
                             f"the config {want}")
        wanted_inputs = cfg.patch_input_sizes or cfg.patch_sizes
        if (model.config.patch_sizes, model.config.focus_input_sizes) != (cfg.patch_sizes, wanted_inputs):
            # One stage-0 backbone shared by models with other patch sizes (msgf reproduce's
            # fixed-size runs start from MS-GFNet's): every weight but the few whose shape
            # depends on the number of sizes (pi's size one-hots) carries over.
            source = model
            model = fresh_model()
            fresh = load_matching(model, source)
            log.print(f"--init {init}: patch sizes {source.config.patch_sizes} (f_L at "
                      f"{source.config.focus_input_sizes}) -> {cfg.patch_sizes} (f_L at {wanted_inputs}); "
                      f"kept at initialisation: {', '.join(fresh) or 'none'}")
    if cfg.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = cfg.bn_momentum
    model.macs_per_step()  # measured once on the meta device, cached in checkpoints
    return model


def load_matching(model: nn.Module, source: nn.Module) -> list[str]:
    """Copy into `model` every parameter and buffer of `source` with the same name and shape;
    the names left as they were (absent from `source` or shaped differently)."""
    theirs = source.state_dict()
    state = model.state_dict()
    kept = [name for name, value in state.items() if name not in theirs or theirs[name].shape != value.shape]
    model.load_state_dict({**state, **{name: theirs[name] for name in state if name not in kept}})
    return kept


def cpu_copy(module: nn.Module) -> dict:
    """A detached CPU copy of `module`'s state dict (a stage's best weights, kept while training goes on)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
