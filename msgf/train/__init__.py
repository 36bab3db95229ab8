"""MS-GFNet training: stage 0 (backbones from the data), stage I (random patches), stage II
(PPO on the policy), stage III (fine-tuning on the policy's patches). See `msgf train`.

Names load on first use, so `msgf --help` does not import torch.
"""

from msgf._lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
