"""Stage 0: the encoders learn the data before any episode runs.

Trains f_L with FC_2 on full-resolution crops that contain an object (or, in an empty scene, a
decoy), and, where the config asks, f_G on glances: through FC_1 (`train_glance`) and/or a
locator head that learns where objects are (`locate_weight`, msgf.train.locate). With
`freeze_glance_encoder` f_G stays as ImageNet left it and only the locator learns, on its maps
computed once (`locator_epochs`); with `locator_finetune_epochs` f_G's blocks at the map's
stride then learn with it, on their inputs computed once. Everything else is frozen.

One step: a crop size, `crops_per_image` crops per image (from the scene set's object windows
with `local_samples`, else this batch's images), cross-entropy on FC_2, plus FC_1's on the
glances and the locator's loss. Validated by how many objects f_L reads on crops centred on
them and f_G reads on the glance, and how often the locator's likeliest cell holds the object.
At the end every focus step's head starts from FC_2, and pi can start from the locator
(`seed_policy`).
"""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from msgf import ops
from msgf.models.heads import CascadeClassifier, MaxPoolClassifier
from msgf.models.inference import inference_encoder
from msgf.models.memo import OutputMemo
from msgf.train import distributed
from msgf.train.data import generator, loader
from msgf.train.evaluation import evaluation_batches
from msgf.train.locate import Locator, fit_locator, locate_loss, locate_targets, seed_policy, top_cell_hits
from msgf.train.metrics import image_hw
from msgf.train.sampling import centred_crops, training_crops
from msgf.train.stages.base import Stage, Trainable
from msgf.train.weights import cpu_copy


class EncoderNet(nn.Module):
    """Stage 0's trainable parts: f_L with FC_2 on crops, and f_G on glances through FC_1
    (`train_glance`) and/or the locator head (`locate_weight`). Only the parts in use are
    registered, so DistributedDataParallel sees no unused parameters."""

    def __init__(self, model, *, glance_head: bool, locator: nn.Module | None, glance_frozen: bool = False):
        super().__init__()
        self.local_encoder, self.local_head = model.local_encoder, model.aux_heads[1]
        self.glance_head = model.aux_heads[0] if glance_head else None
        self.glance_frozen = glance_frozen
        if glance_frozen:  # used, not trained: kept out of the registered (and DDP-synced) modules
            self.__dict__["global_encoder"] = model.global_encoder
        elif glance_head or locator is not None:
            self.global_encoder = model.global_encoder
        self.locator = locator

    def forward(self, glances, crops):
        local = self.local_head(self.local_encoder(crops)[1])
        glance_logits = where = None
        if glances is not None:
            with torch.no_grad() if self.glance_frozen else contextlib.nullcontext():
                fmap, pooled = self.global_encoder(glances)
            glance_logits = None if self.glance_head is None else self.glance_head(pooled)
            where = None if self.locator is None else self.locator(fmap)
        return glance_logits, local, where


class EncoderTraining(Stage):
    number = 0
    episodic = False

    def __init__(self, run):
        super().__init__(run)
        self.locator: Locator | None = None
        self.locator_state: dict | None = None  # from --resume: the locator is fitted already
        self.glance_batches = self.local_batches = None
        self._map_encoder: nn.Module | None = None  # f_G's inference form, while the scene set is built

    @property
    def uses_glance(self) -> bool:
        """Whether f_L's epochs also run f_G (the locator is fitted apart with locator_epochs)."""
        s0 = self.settings
        return s0.train_glance or (s0.locate_weight > 0 and s0.locator_epochs == 0)

    @property
    def trains_glance(self) -> bool:
        return self.uses_glance and not self.settings.freeze_glance_encoder

    def prepare(self) -> Trainable:
        s0 = self.settings
        self.locator = self._new_locator()
        module = EncoderNet(self.model, glance_head=s0.train_glance,
                            locator=self.locator if self.uses_glance else None,
                            glance_frozen=s0.freeze_glance_encoder)
        parameters = self.train_only(module.parameters())
        if s0.locator_epochs > 0 and self.locator_state is None:
            self._fit_locator()
        return Trainable(module, *self.sgd_cosine([{"params": parameters, "lr": s0.lr}]))

    def _new_locator(self) -> Locator | None:
        """The locator head on f_G's map, or None when not asked for. Seeded on its own so that
        adding it leaves every other initial weight unchanged."""
        s0 = self.settings
        if s0.locate_weight <= 0:
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            locator = Locator(self.model.global_encoder.map_channels, hidden=s0.locator_hidden,
                              kernel=s0.locator_kernel)
        if self.locator_state is not None:
            locator.load_state_dict(self.locator_state)
        return locator.to(self.run.device)

    @property
    def locator_on_scene_set(self) -> bool:
        """Whether the locator fits on f_G's maps of the scene set's `glance_samples` images
        (more than the training split holds) rather than of the training split."""
        s0 = self.settings
        return s0.locator_epochs > 0 and s0.glance_samples > 0

    @torch.no_grad()
    def _fit_locator(self) -> None:
        """With a frozen f_G the locator fits on f_G's maps of the training images, computed once
        (locate.fit_locator). Every process fits the same locator from the same stream."""
        cfg, m, run = self.cfg, self.model, self.run
        started = time.time()
        m.eval()
        tail_inputs = None
        if self.locator_on_scene_set:
            scenes = self._scene_set()
            count = min(self.settings.glance_samples, len(scenes))
            maps, objects, hw = scenes.maps[:count], scenes.objects[:count], scenes.image_hw
            if self.fine_tunes_glance:  # the scene set holds the inputs of f_G's last blocks
                tail_inputs, maps = maps, self._tail_maps(maps)
        else:
            maps, objects, hw = self._training_split_maps()
        m.train()
        with torch.enable_grad():
            losses = fit_locator(self.locator, maps, objects, hw, epochs=self.settings.locator_epochs,
                                 generator=generator(cfg.seed, self.number, 0, 0, "locator"))
        run.log.print(f"stage0 locator: {len(losses)} passes over {len(objects)} glance maps "
                      f"({time.time() - started:.0f}s) | loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        if tail_inputs is not None:
            pooled = maps.float().mean((2, 3))
            del maps
            self._fine_tune_glance(tail_inputs, pooled, objects, hw)

    @property
    def fine_tunes_glance(self) -> bool:
        """Whether f_G's last blocks train with the locator (`locator_finetune_epochs`)."""
        return self.locator_on_scene_set and self.settings.locator_finetune_epochs > 0

    @torch.no_grad()
    def _tail_maps(self, inputs: torch.Tensor) -> torch.Tensor:
        """f_G's maps from the inputs of its last blocks (`Backbone.map_tail`), as they stand:
        through the inference form that encoded the scene set (see `_frozen_glance_maps`)."""
        tail, self._map_encoder = self._map_encoder.map_tail(), None
        layout = torch.channels_last if self.run.device.type == "cpu" else torch.contiguous_format  # as its weights
        size = self.cfg.data.eval_batch_size
        with self.run.autocast():
            return torch.cat([tail(inputs[i:i + size].to(self.run.device).float().contiguous(memory_format=layout))
                              .half().cpu() for i in range(0, len(inputs), size)])

    def _fine_tune_glance(self, tail_inputs: torch.Tensor, pooled: torch.Tensor, objects: list,
                          hw: tuple[int, int]) -> None:
        """f_G's last blocks and the fitted locator train together on the scene set (locate.fit_locator
        with a trunk): f_G's map becomes an object detector, which pi reads from here on, while
        its spatial mean (f_C's glance input) is held near `pooled`, the frozen map's. The
        locator first fits on the frozen map (a random head would send the blocks' first steps
        astray: offline, one pass without that start covered the target 7 points less often).
        Any glance outputs kept from before are dropped (the weights changed)."""
        cfg, s0, run, encoder = self.cfg, self.settings, self.run, self.model.global_encoder
        started = time.time()
        self.model.train()
        with torch.enable_grad():
            losses = fit_locator(self.locator, tail_inputs, objects, hw, epochs=s0.locator_finetune_epochs,
                                 generator=generator(cfg.seed, self.number, 0, 0, "glance tuning"),
                                 lr=1e-3, trunk=encoder.map_tail(), trunk_lr=s0.locator_finetune_lr,
                                 pooled=pooled, pooled_weight=s0.locator_finetune_keep)
        distributed.broadcast_parameters(run.world, encoder)
        distributed.broadcast_parameters(run.world, self.locator)
        if encoder.memo is not None:
            encoder.memo = OutputMemo(encoder.memo.max_bytes)
        run.log.print(f"stage0 f_G's last blocks fine-tuned with the locator: {len(losses)} passes over "
                      f"{len(objects)} glances ({time.time() - started:.0f}s) | loss {losses[0]:.4f} -> "
                      f"{losses[-1]:.4f}")

    def _training_split_maps(self) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
        """f_G's maps of the training split's glances, with each image's objects."""
        cfg, m, run = self.cfg, self.model, self.run
        batches = loader(run.splits.train(self.number, 0), batch_size=cfg.data.eval_batch_size, shuffle=False,
                         seed=0, epoch=0, rank=0, world=1, workers=cfg.data.workers, drop_last=False)
        maps, objects = [], []
        for batch in tqdm(batches, desc="stage0 glance maps", unit="batch", leave=False,
                          disable=not (run.main and run.opt.progress)):
            images = batch["images"].to(run.device)
            with run.autocast():
                glances = ops.glance(images, cfg.glance_size, mean=m.config.mean, std=m.config.std)
                maps.append(m.global_encoder(glances)[0].float().cpu())
            distractors = batch.get("distractors") or [torch.zeros((0, 4))] * len(images)
            objects += [torch.cat([b, d]) for b, d in zip(batch["boxes"], distractors)]
        return torch.cat(maps), objects, image_hw(images)

    # ------------------------------------------------------------------ the data of an epoch

    def batches(self, epoch: int):
        """The training split's batches; or, where every step takes its crops and glances from the
        scene set (`local_samples`, with f_G idle or on `glance_samples`), as many batches without
        images: rendering or decoding them would buy nothing."""
        split = super().batches(epoch)
        s0 = self.settings
        if s0.local_samples > 0 and (not self.uses_glance or s0.glance_samples > 0):
            return [{"images": torch.empty(0, dtype=torch.uint8), "labels": torch.empty(0, dtype=torch.long),
                     "boxes": []} for _ in range(len(split))]
        return split

    def start_epoch(self, epoch: int) -> None:
        self.glance_batches = self._glance_batches(epoch)
        self.local_batches = self._local_batches(epoch)

    def _scene_set(self):
        """The GlanceSet: the first max(glance_samples, local_samples) training images as
        glances (or, where the locator fits on a frozen f_G, f_G's maps of them), with object
        windows twice the largest patch where f_L trains on them."""
        s0, cfg, m, run = self.settings, self.cfg, self.model, self.run
        on_glances = self.uses_glance or self.locator_on_scene_set
        count = max(s0.glance_samples if on_glances else 0, s0.local_samples)
        region = 2 * max(cfg.patch_sizes) if s0.local_samples > 0 else 0
        encode = self._frozen_glance_maps if self.locator_on_scene_set else None
        scenes = run.splits.glances(cfg.glance_size, count, m.config.mean, m.config.std, region, encode)
        if not self.fine_tunes_glance:  # else `_tail_maps` still needs it
            self._map_encoder = None  # the set is built once
        return scenes

    @torch.no_grad()
    def _frozen_glance_maps(self, glances):
        """f_G's maps of scene-set glances (or, where its last blocks fine-tune, those blocks'
        inputs: `Backbone.map_tail_input`). f_G stays fixed meanwhile (its BatchNorm statistics the
        pretrained ones), so its inference form computes them, built on first use: equal up to
        float rounding, and 3x faster on the CPU (Lite0 at 256 px, 8 glances a batch, 2 threads:
        30 -> 10 ms per glance; cpu-demo encodes 4000)."""
        if self._map_encoder is None:
            encoder, training = self.model.global_encoder, self.model.global_encoder.training
            self._map_encoder = inference_encoder(encoder.eval(), [self.cfg.glance_size], "global_encoder")
            encoder.train(training)
        encode = self._map_encoder.map_tail_input if self.fine_tunes_glance else self._map_encoder.feature_map
        with self.run.autocast():
            return encode(glances.to(self.run.device)).float().cpu()

    def _endless(self, count: int, epoch: int, purpose: str, setting: str):
        """Batches of indices into the first `count` items of the scene set, endless: a new
        permutation per pass."""
        gen = generator(self.cfg.seed, self.number, epoch, self.run.world.rank, purpose)
        size = self.cfg.data.batch_size
        if count < size:
            raise ValueError(f"stage0.{setting} ({count}) is smaller than one batch ({size})")
        while True:
            order = torch.randperm(count, generator=gen)
            for start in range(0, count - size + 1, size):
                yield order[start:start + size], gen

    def _glance_batches(self, epoch: int):
        """f_G's batches from the scene set (`glance_samples`): random left-right flips; None to
        use the batch's own images."""
        s0 = self.settings
        if s0.glance_samples <= 0 or not self.uses_glance:
            return None
        scenes = self._scene_set()
        count = min(s0.glance_samples, len(scenes))
        return ((*scenes.batch(indices, torch.rand(len(indices), generator=gen) < 0.5), scenes.image_hw)
                for indices, gen in self._endless(count, epoch, "glances", "glance_samples"))

    def _local_batches(self, epoch: int):
        """f_L's batches from the scene set's object windows (`local_samples`); None to crop the
        batch's own images."""
        s0 = self.settings
        if s0.local_samples <= 0:
            return None
        scenes = self._scene_set()
        batches = self._endless(min(s0.local_samples, len(scenes)), epoch, "regions", "local_samples")
        return (scenes.region_batch(indices) for indices, _ in batches)

    # ---------------------------------------------------------------------------- one step

    def step(self, net, optimizer, batch, gen) -> dict:
        cfg, s0, m, device = self.cfg, self.settings, self.model, self.run.device
        images, labels, boxes, distractors = batch["images"], batch["labels"], batch["boxes"], batch.get("distractors")
        glance_batch = None if self.glance_batches is None else next(self.glance_batches)
        local_batch = None if self.local_batches is None else next(self.local_batches)
        net.train()
        if s0.freeze_glance_encoder:
            m.global_encoder.eval()  # its BatchNorm statistics stay the pretrained ones
        size = self._crop_size(gen)
        # f_L's crops: from the scene set's object windows (local_samples), or this batch's images
        sources, crop_labels, crop_objects, crop_distractors = images, labels, boxes, distractors
        if local_batch is not None:
            sources, crop_labels, crop_objects = local_batch
            sources, crop_labels, crop_distractors = sources.to(device), crop_labels.to(device), None
        crop_boxes = torch.cat([training_crops(crop_objects, size, image_hw(sources), gen, s0.object_crops,
                                               crop_distractors)
                                for _ in range(s0.crops_per_image)]).to(device)
        crop_labels = crop_labels.repeat(s0.crops_per_image)
        with self.run.autocast():
            crops = ops.crop_resize(sources, crop_boxes, m.config.input_side(size), mean=m.config.mean,
                                    std=m.config.std).patches[0]
            if glance_batch is not None:  # f_G learns on the glance set, f_L on this batch's crops
                glances, glance_labels, objects, glance_hw = glance_batch
                glances, glance_labels = glances.to(device), glance_labels.to(device)
            elif self.uses_glance:  # f_G on this batch's glances
                glances = ops.glance(images, cfg.glance_size, mean=m.config.mean, std=m.config.std)
                glance_labels, glance_hw = labels, image_hw(images)
                objects = boxes if distractors is None else [torch.cat([b, d]) for b, d in zip(boxes, distractors)]
            else:  # f_L alone (the locator was fitted apart): the batch may hold no images (`batches`)
                glances = None
            if cfg.channels_last and self.run.cuda:
                crops = crops.contiguous(memory_format=torch.channels_last)
                glances = None if glances is None else glances.contiguous(memory_format=torch.channels_last)
            glance_logits, local_logits, where = net(glances, crops)
            stats = {"local_loss": F.cross_entropy(local_logits.float(), crop_labels)}
            if glance_logits is not None:
                stats["glance_loss"] = F.cross_entropy(glance_logits.float(), glance_labels)
            if where is not None:
                presence, offsets = locate_targets(objects, glance_hw, tuple(where.shape[-2:]))
                stats["locate_loss"] = locate_loss(where, presence, offsets)
        loss = stats["local_loss"] + stats.get("glance_loss", 0.0) + s0.locate_weight * stats.get("locate_loss", 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in stats.items()}}

    def _crop_size(self, gen) -> int:
        sizes = self.cfg.patch_sizes
        if self.settings.crop_sizes == "smallest":
            return sizes[0]
        return sizes[int(torch.randint(len(sizes), (1,), generator=gen))]

    def end_epoch(self) -> None:
        if self.settings.seed_policy:  # before validation, which keeps the best epoch
            seed_policy(self.model.policy, self.locator, self.settings.seed_sharpness)

    # ---------------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict:
        cfg, s0, m, run = self.cfg, self.settings, self.model, self.run
        m.eval()
        size = cfg.patch_sizes[0] if s0.crop_sizes == "smallest" else cfg.patch_sizes[len(cfg.patch_sizes) // 2]
        # glance correct, crop correct, images, top cell holds the object, images with an object
        sums = torch.zeros(5, dtype=torch.float64)
        for batch in evaluation_batches(run, "val"):
            images, labels = batch["images"].to(run.device), batch["labels"].to(run.device)
            boxes = centred_crops(batch["boxes"], size, image_hw(images)).to(run.device)
            with run.autocast():
                glances = ops.glance(images, cfg.glance_size, mean=m.config.mean, std=m.config.std)
                crops = ops.crop_resize(images, boxes, m.config.input_side(size), mean=m.config.mean,
                                        std=m.config.std).patches[0]
                fmap, pooled = m.global_encoder(glances)
                g = m.aux_heads[0](pooled).argmax(1)
                c = m.aux_heads[1](m.local_encoder(crops)[1]).argmax(1)
            located = (0, 0)
            if self.locator is not None:
                where = self.locator(fmap)
                targets = locate_targets(batch["boxes"], image_hw(images), tuple(where.shape[-2:]))[0]
                located = top_cell_hits(where, targets)
            sums += torch.tensor([float((g == labels).sum()), float((c == labels).sum()), len(labels), *located],
                                 dtype=torch.float64)
        sums = distributed.all_reduce_sum(run.world, sums)
        glance_acc, crop_acc = float(sums[0] / sums[2]), float(sums[1] / sums[2])
        m.train()
        result = {f"object_crop_accuracy_{size}": crop_acc, "score": crop_acc}
        if s0.train_glance:
            result.update(glance_accuracy=glance_acc, score=(glance_acc + crop_acc) / 2)
        if self.locator is not None and sums[4] > 0:
            # how often f_G's most likely cell holds the annotated object; decoys share the
            # other likely cells, so 1 is out of reach where scenes hold several
            located = float(sums[3] / sums[4])
            result["glance_top_cell_holds_object"] = located
            result["score"] = (result["score"] + located) / 2
        return result

    # ------------------------------------------------------------------------ what it leaves

    def finish(self) -> None:
        self.glance_batches = self.local_batches = None
        self.run.splits.release_glances()
        # every focus step's auxiliary head starts from the local encoder's head, and so does a
        # cascade f_C on the patches (measured on cpu-demo: on sign-centred patches f_C trained
        # from zero in stage I read 26-32% of signs, FC_2 30-52%)
        with torch.no_grad():
            for head in self.model.aux_heads[2:]:
                head.load_state_dict(self.model.aux_heads[1].state_dict())
        if isinstance(self.model.classifier, (CascadeClassifier, MaxPoolClassifier)):
            self.model.classifier.start_focus_heads_from(self.model.aux_heads[1])

    def state_dict(self) -> dict | None:
        return None if self.locator is None else cpu_copy(self.locator)

    def load_state_dict(self, state: dict) -> None:
        self.locator_state = state
