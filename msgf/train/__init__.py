"""MS-GFNet training: stage 0 (backbones from the data), stage I (random patches), stage II
(PPO on the policy), stage III (fine-tuning on the policy's patches). See `msgf train`.

Names load on first use, so `msgf --help` does not import torch.
"""
_LAZY = {
    "RunOptions": "msgf.train.loop",
    "train": "msgf.train.loop",
    "PRESETS": "msgf.train.presets",
    "TrainConfig": "msgf.train.presets",
    "override": "msgf.train.presets",
    "paper_for_backbone": "msgf.train.presets",
    "preset": "msgf.train.presets",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'msgf.train' has no attribute {name!r}")
