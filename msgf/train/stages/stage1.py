"""Stage I: the encoders and the classifier learn from random patches.

Trains f_G, f_L, f_C and the auxiliary heads FC_t (pi is frozen; so is f_G with
`freeze_glance_encoder`). One step runs whole episodes with uniformly random locations, and a
`object_location_fraction` of them moved onto the object (or, in an empty scene, a decoy), at a
uniformly random patch size per step, and minimises the paper's loss

    mean over t of [CE(p_t, y) + lambda * CE(FC_t(e_t), y)]    (lambda: `aux_weight`),

where, with `classify_unseen` off, CE(p_t, y) counts only at the glance and once a patch has
held the sample's object (always for samples without a box).

Validated by the accuracy at every step, averaged over steps and patch sizes, with random
locations (pi has not trained yet).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from msgf.train.evaluation import scored_validation
from msgf.train.metrics import image_hw
from msgf.train.sampling import object_locations, object_seen
from msgf.train.stages.base import Stage, Trainable


class RandomPatchTraining(Stage):
    number = 1

    @property
    def trains_glance(self) -> bool:
        return not self.settings.freeze_glance_encoder

    def prepare(self) -> Trainable:
        m, s = self.model, self.settings
        encoders = [m.local_encoder] if s.freeze_glance_encoder else [m.global_encoder, m.local_encoder]
        encoder_parameters = [p for e in encoders for p in e.parameters()]
        head_parameters = list(m.classifier.parameters()) + list(m.aux_heads.parameters())
        self.train_only(encoder_parameters + head_parameters)
        return Trainable(m, *self.sgd_cosine([{"params": encoder_parameters, "lr": s.lr_encoders},
                                              {"params": head_parameters, "lr": s.lr_classifier}]))

    def locations(self, batch: dict, sizes, gen: torch.Generator):
        """(B, T-1, 2) focus locations for the batch's episodes: uniformly random, a share of them
        on the object."""
        images, boxes, distractors = batch["images"], batch["boxes"], batch.get("distractors")
        locs = torch.rand((len(images), self.cfg.T - 1, 2), generator=gen)
        if self.settings.object_location_fraction > 0:
            targets = boxes if distractors is None else \
                [b if len(b) else d for b, d in zip(boxes, distractors)]  # EMPTY scenes: a decoy
            locs = object_locations(locs, targets, sizes, image_hw(images), gen,
                                    self.settings.object_location_fraction)
        return locs.to(self.run.device)

    def step(self, net, optimizer, batch, gen) -> dict:
        cfg, m = self.cfg, self.model
        images, labels = batch["images"], batch["labels"]
        sizes = torch.tensor(cfg.patch_sizes)[torch.randint(len(cfg.patch_sizes), (len(labels), cfg.T - 1),
                                                            generator=gen)]
        locs = self.locations(batch, sizes, gen)
        m.train()
        if self.settings.freeze_glance_encoder:
            m.global_encoder.eval()  # its BatchNorm statistics stay as stage 0 left them
        trace = None if self.settings.classify_unseen else []
        with self.run.autocast():
            states = net(images, sizes, locs, trace=trace)
            # which steps' f_C loss counts: all, or the glance's and those after the object was seen
            counts = torch.ones((len(labels), len(states))) if trace is None else \
                object_seen(batch["boxes"], trace, sizes, image_hw(images)).float()
            counts[:, 0] = 1.0
            counts = counts.to(labels.device)
            losses = [(F.cross_entropy(s.logits.float(), labels, reduction="none") * counts[:, t]).mean()
                      + self.settings.aux_weight * F.cross_entropy(m.aux_logits(s).float(), labels)
                      for t, s in enumerate(states)]
            loss = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            last_acc = float((states[-1].logits.argmax(1) == labels).float().mean())
        return {"loss": float(loss.detach()), "accuracy_last_step": last_acc}

    def validate(self) -> dict:
        return scored_validation(self.run, self.number, ("random",), scored_by="random")
