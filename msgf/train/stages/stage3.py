"""Stage III: the encoders and the classifier fine-tune on the patches pi picks.

Stage I's training (msgf.train.stages.stage1) with one change: each focus patch goes where pi's
mean points, instead of a random location; the patch sizes stay uniformly random. pi itself is
frozen, and so is f_G with `freeze_glance_encoder` (pi was trained on its feature map).
Validated by the accuracy with pi's locations, averaged over steps and patch sizes.
"""
from __future__ import annotations

from msgf.train.evaluation import scored_validation
from msgf.train.stages.stage1 import RandomPatchTraining


class PolicyPatchTraining(RandomPatchTraining):
    number = 3

    def locations(self, batch, sizes, gen):
        return None  # the episode asks pi for its mean location at every step

    def validate(self) -> dict:
        return scored_validation(self.run, self.number, ("policy",), scored_by="policy")
