"""The stages of MS-GFNet training, one module each, run in order by msgf.train.loop:

| stage | module | trains | one step |
|---|---|---|---|
| 0 | stage0.py | f_L + FC_2 (+ f_G through FC_1, or a locator head) | crops that contain an object; glances |
| I | stage1.py | f_G, f_L, f_C, FC_t | episodes at random locations, CE(p_t) + lambda CE(FC_t) |
| II | stage2.py | pi | PPO on episodes pi samples, contrastive or increment rewards |
| III | stage3.py | f_G, f_L, f_C, FC_t | stage I's step at pi's locations |

Each module's `Stage` subclass says what it trains and freezes, how a step goes and how it is
validated (base.py: what the loop asks of a stage).
"""
from __future__ import annotations

from msgf.train.stages.base import Stage, Trainable
from msgf.train.stages.stage0 import EncoderTraining
from msgf.train.stages.stage1 import RandomPatchTraining
from msgf.train.stages.stage2 import PolicyTraining
from msgf.train.stages.stage3 import PolicyPatchTraining

STAGES: dict[int, type[Stage]] = {stage.number: stage for stage in
                                  (EncoderTraining, RandomPatchTraining, PolicyTraining, PolicyPatchTraining)}

__all__ = ["STAGES", "EncoderTraining", "PolicyPatchTraining", "PolicyTraining", "RandomPatchTraining", "Stage",
           "Trainable"]
