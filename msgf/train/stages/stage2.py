"""Stage II: the patch proposal network pi learns by PPO.

Trains pi alone: the encoders and the classifier are frozen and in eval mode (BatchNorm
statistics included). One step plays the batch's episodes without gradients, pi sampling each
focus location from its Gaussian and the patch size drawn uniformly (msgf.train.ppo.
collect_rollout), with the reward `reward` ("contrastive": p_y after pi's patch minus after
random patches of the same size; "increments": the rise in p_y), then runs the PPO update on
that rollout (ppo.ppo_update, Adam). Validated by the accuracy with pi's locations, averaged over
steps and patch sizes (random locations are reported beside it).
"""
from __future__ import annotations

import dataclasses

import torch

from msgf.train import distributed, ppo
from msgf.train.evaluation import scored_validation
from msgf.train.stages.base import Stage, Trainable


class PolicyTraining(Stage):
    number = 2
    # PPO replays pi's recurrence several times per update: its gradients are averaged
    # explicitly (distributed.average_gradients) rather than by DistributedDataParallel
    replicated = False
    trains_glance = False

    def prepare(self) -> Trainable:
        m = self.model
        if self.settings.location_std is not None:  # stored with the model: pi's training std
            m.config = dataclasses.replace(m.config, location_std=float(self.settings.location_std))
        parameters = self.train_only(m.policy.parameters())
        return Trainable(m.policy, torch.optim.Adam(parameters, lr=self.settings.lr))

    def step(self, net, optimizer, batch, gen) -> dict:
        cfg, m, device = self.cfg, self.model, self.run.device
        labels, boxes = batch["labels"], batch["boxes"]
        sizes = torch.tensor(cfg.patch_sizes)[torch.randint(len(cfg.patch_sizes), (len(labels), cfg.T - 1),
                                                            generator=gen)]
        m.eval()  # encoders and classifier frozen, BatchNorm statistics included
        mask = torch.tensor([len(b) > 0 for b in boxes], device=device) \
            if self.settings.reward_only_with_boxes else None
        rollout = ppo.collect_rollout(m, batch["images"], labels, sizes.to(device), self.settings, gen,
                                      self.run.autocast, mask)
        m.policy.train()
        stats = ppo.ppo_update(m.policy, optimizer, rollout, self.settings, m.config.location_std, gen,
                               distributed.average_gradients(self.run.world))
        stats["reward"] = float(rollout.rewards.sum(0).mean())
        return stats

    def validate(self) -> dict:
        return scored_validation(self.run, self.number, ("policy", "random"), scored_by="policy")
