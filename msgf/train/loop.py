"""The three-stage MS-GFNet training run (plus stage 0), resumable and distributed.

`train(config, options)` runs the requested stages in order. After every epoch rank 0 writes
`train_state.ckpt` (model weights, the stage's best weights so far, optimizer and scheduler
state, position, history) atomically, so a run killed at any moment loses at most one epoch;
after every stage it writes `stageN.ckpt` (the stage's best epoch), and at the end
`model.ckpt`, which `msgf evaluate` reads as is, plus validation/test trajectories for
`msgf search-thresholds`.

All randomness of an epoch comes from generators seeded by (seed, stage, epoch, rank), so a
resumed run repeats exactly what the uninterrupted run would have done (on CPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from msgf import ops
from msgf.checkpoint import read_checkpoint, save_checkpoint
from msgf.models.heads import CascadeClassifier
from msgf.models.memo import OutputMemo
from msgf.train import distributed, ppo
from msgf.train.data import Splits, generator, loader
from msgf.train.locate import Locator, fit_locator, locate_loss, locate_targets, seed_policy, top_cell_hits
from msgf.train.log import RunLog
from msgf.train.metrics import StepTally, evaluate_steps, image_hw
from msgf.train.presets import TrainConfig

STAGES = (0, 1, 2, 3)
STATE_FILE = "train_state.ckpt"


@dataclass
class RunOptions:
    out: Path
    resume: bool = False
    stages: tuple[int, ...] = STAGES
    init: Path | None = None  # a model checkpoint (e.g. stage1.ckpt) to start from
    device: str | None = None
    progress: bool = True


@dataclass
class Position:
    """Where the run stands: the next epoch of stages[stage_pos], and that stage's best so far."""

    stage_pos: int = 0
    epoch: int = 0
    best_score: float | None = None
    best_state: dict | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    history: list = field(default_factory=list)
    results: dict = field(default_factory=dict)  # per stage: test summary at the stage's end
    locator: dict | None = None  # stage 0's locator head (not part of the model), for --resume

    def to_plain(self) -> dict:
        return {"stage_pos": self.stage_pos, "epoch": self.epoch, "best_score": self.best_score,
                "best_state": self.best_state, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "history": self.history, "results": self.results,
                "locator": self.locator}


class _Stage0Net(nn.Module):
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


def train(config: TrainConfig, options: RunOptions) -> dict:
    trainer = Trainer(config, options)
    try:
        return trainer.run()
    finally:
        trainer.close()


class Trainer:
    def __init__(self, config: TrainConfig, options: RunOptions):
        self.cfg, self.opt = config, options
        self.out = Path(options.out)
        self.world, self.device = distributed.init(options.device)
        self.main = self.world.is_main
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        distributed.barrier(self.world)
        self.cuda = self.device.type == "cuda"
        self._restore_flush = False
        if not self.cuda:
            # Fresh conv weights produce denormal activations that slow CPU training ~100x
            # for the first steps; flushing them changes nothing measurable. close() restores
            # the caller's setting (it is process-wide).
            self._restore_flush = not _denormals_flushed()
            torch.set_flush_denormal(True)
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) \
            if (config.amp and self.cuda) else contextlib.nullcontext
        self.splits = Splits(config.data, config.seed, progress=self.main and options.progress)
        self.log = RunLog(self.out, enabled=self.main, append=options.resume)
        self.stages = tuple(s for s in options.stages)
        self.state_path = self.out / STATE_FILE
        self.position = Position()
        self._locator = None  # stage 0's locator head, while stage 0 runs
        self.model = self._build_model()

    # ---------------------------------------------------------------------------- setup

    def _build_model(self):
        from msgf import build_model, load_checkpoint

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        classes = self.splits.classes()

        def fresh_model():
            return build_model(cfg.backbone, len(classes), cfg.glance_size, cfg.patch_sizes, cfg.T, cfg.classifier,
                               class_names=classes, classifier_hidden=cfg.classifier_hidden,
                               policy_head=cfg.policy_head, policy_inhibition=cfg.policy_inhibition,
                               map_stride=cfg.map_stride,
                               pretrained=cfg.pretrained,
                               global_weights=cfg.weights, local_weights=cfg.weights)

        if self.opt.init is not None:
            model = load_checkpoint(self.opt.init)
            got = (model.config.backbone, model.config.glance_size, model.config.T, model.config.policy_head,
                   model.config.num_classes)
            want = (cfg.backbone, cfg.glance_size, cfg.T, cfg.policy_head, len(classes))
            if got != want:
                raise ValueError(f"--init checkpoint is (backbone, glance, T, policy head, classes) = {got}, "
                                 f"the config {want}")
            if tuple(model.config.patch_sizes) != tuple(cfg.patch_sizes):
                # One stage-0 backbone shared by models with other patch sizes (msgf reproduce's
                # fixed-size runs start from MS-GFNet's): every weight but the few whose shape
                # depends on the number of sizes (pi's size one-hots) carries over.
                source = model
                model = fresh_model()
                fresh = load_matching(model, source)
                self.log.print(f"--init {self.opt.init}: patch sizes {tuple(source.config.patch_sizes)} -> "
                               f"{tuple(cfg.patch_sizes)}; kept at initialisation: {', '.join(fresh) or 'none'}")
        else:
            model = fresh_model()
        if cfg.bn_momentum is not None:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = cfg.bn_momentum
        model.macs_per_step()  # measured once on the meta device, cached in checkpoints
        model = model.to(self.device)
        if cfg.channels_last and self.cuda:
            model = model.to(memory_format=torch.channels_last)
        if self.opt.resume and self.state_path.exists():
            self._load_state(model)
        return model

    def _load_state(self, model) -> None:
        payload = read_checkpoint(self.state_path)
        state = payload["extra"]["train_state"]
        if state["config"] != self.cfg.to_dict() or list(state["stages"]) != list(self.stages):
            raise ValueError(f"{self.state_path} belongs to a run with another config or stages; "
                             f"use another --out or drop --resume")
        model.load_state_dict(payload["state_dict"])
        pos = state["position"]
        self.position = Position(**pos)
        self.log.print(f"resuming from {self.state_path}: stage {self._stage_name()} epoch {self.position.epoch}")

    def _stage_name(self) -> str:
        pos = self.position.stage_pos
        return f"stage{self.stages[pos]}" if pos < len(self.stages) else "done"

    def _save_state(self) -> None:
        if self.main:
            state = {"config": self.cfg.to_dict(), "stages": list(self.stages), "position": self.position.to_plain()}
            save_checkpoint(self.model, self.state_path, train_state=state)
        distributed.barrier(self.world)

    def close(self) -> None:
        self.log.close()
        distributed.shutdown(self.world)
        if self._restore_flush:
            torch.set_flush_denormal(False)

    # ---------------------------------------------------------------------------- the run

    def run(self) -> dict:
        while self.position.stage_pos < len(self.stages):
            stage = self.stages[self.position.stage_pos]
            self._run_stage(stage)
        return self._finish()

    def _run_stage(self, stage: int) -> None:
        scfg = getattr(self.cfg, f"stage{stage}")
        name = f"stage{stage}"
        pos = self.position
        self._keep_glance_outputs(not self._trains_glance(stage))
        if scfg.epochs > 0:
            net, params = self._prepare(stage)
            if stage == 0 and self.cfg.stage0.locator_epochs > 0 and pos.locator is None:
                self._fit_locator()
            optimizer, scheduler = self._optimizer(stage, params)
            if pos.optimizer is not None:
                optimizer.load_state_dict(pos.optimizer)
                if scheduler is not None and pos.scheduler is not None:
                    scheduler.load_state_dict(pos.scheduler)
            if self.cfg.keep_incoming_weights and stage >= 1 and pos.epoch == 0 and pos.best_score is None:
                pos.best_score = self._validate(stage, -1)["score"]
                pos.best_state = cpu_copy(self.model)
                self.log.print(f"{name}: the incoming weights score {pos.best_score:.4f} on validation; "
                               f"an epoch must beat that to replace them")
            while pos.epoch < scfg.epochs:
                epoch = pos.epoch
                started = time.time()
                train_stats = self._train_epoch(stage, epoch, net, optimizer, scheduler)
                distributed.broadcast_buffers(self.world, self.model)
                if stage == 0 and self.cfg.stage0.seed_policy:  # before validation keeps the best epoch
                    seed_policy(self.model.policy, self._locator, self.cfg.stage0.seed_sharpness)
                val = self._validate(stage, epoch)
                score = val.pop("score")
                if pos.best_score is None or score > pos.best_score:
                    pos.best_score = score
                    pos.best_state = cpu_copy(self.model)
                row = {"stage": stage, "epoch": epoch, "score": score, "seconds": round(time.time() - started, 1),
                       **{f"train_{k}": v for k, v in train_stats.items()}}
                pos.history.append(row)
                self.log.metrics(name, epoch, "train", train_stats)
                self.log.metrics(name, epoch, "val", {**val, "score": score})
                self.log.print(self._epoch_line(name, epoch, scfg.epochs, train_stats, val, score, row["seconds"]))
                pos.epoch = epoch + 1
                pos.optimizer = optimizer.state_dict()
                pos.scheduler = scheduler.state_dict() if scheduler is not None else None
                if stage == 0 and self._locator is not None:
                    pos.locator = cpu_copy(self._locator)
                self._save_state()
            self._unfreeze()
            if pos.best_state is not None:
                self.model.load_state_dict(pos.best_state)
            if stage == 0:
                # every focus step's auxiliary head starts from the local encoder's head, and so
                # does a cascade f_C on the patches (measured on cpu-demo: on sign-centred
                # patches f_C trained from zero in stage I read 26-32% of signs, FC_2 30-52%)
                with torch.no_grad():
                    for head in self.model.aux_heads[2:]:
                        head.load_state_dict(self.model.aux_heads[1].state_dict())
                if isinstance(self.model.classifier, CascadeClassifier):
                    self.model.classifier.start_focus_heads_from(self.model.aux_heads[1])
        self._keep_glance_outputs(True)  # fixed from here to the next stage
        if stage >= 1 and scfg.epochs > 0:  # a stage without epochs leaves the model as the last one's
            test = self._test_summary(stage)
            pos.results[name] = test
            self.log.metrics(name, scfg.epochs, "test", test)
            self.log.print(format_steps(f"{name} (best epoch) on the test split", test, self.model.config))
        if self.main:
            save_checkpoint(self.model, self.out / f"{name}.ckpt", training={"stage": stage,
                                                                            "best_val_score": pos.best_score})
        self.position = Position(stage_pos=pos.stage_pos + 1, history=pos.history, results=pos.results)
        self._save_state()

    # ------------------------------------------------------------------- per-stage setup

    def _freeze_all(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _unfreeze(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(True)

    def _prepare(self, stage: int):
        """The module to train (DDP-wrapped in distributed runs) and its parameter groups."""
        m = self.model
        self._freeze_all()
        if stage == 0:
            locator = self._stage0_locator()  # fitted apart from f_L's epochs where locator_epochs says so
            module = _Stage0Net(m, glance_head=self.cfg.stage0.train_glance,
                                locator=locator if _stage0_uses_glance(self.cfg.stage0) else None,
                                glance_frozen=self._glance_frozen(0))
            groups = [{"params": list(module.parameters())}]
        elif stage in (1, 3):
            module = m
            encoders = [m.local_encoder] if self._glance_frozen(stage) else [m.global_encoder, m.local_encoder]
            groups = [{"params": [p for e in encoders for p in e.parameters()], "name": "encoders"},
                      {"params": list(m.classifier.parameters()) + list(m.aux_heads.parameters()),
                       "name": "classifier"}]
        else:
            if self.cfg.stage2.location_std is not None:  # stored with the model: pi's training std
                m.config = dataclasses.replace(m.config, location_std=float(self.cfg.stage2.location_std))
            module = m.policy
            groups = [{"params": list(m.policy.parameters())}]
        for group in groups:
            for p in group["params"]:
                p.requires_grad_(True)
        if self.world.distributed and stage != 2:
            # stage II replays pi's recurrence several times per update: gradients are
            # averaged explicitly there (distributed.average_gradients)
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device.index] if self.cuda else None)
        return module, groups

    def _glance_frozen(self, stage: int) -> bool:
        return getattr(self.cfg, f"stage{stage}").freeze_glance_encoder

    def _trains_glance(self, stage: int) -> bool:
        """Whether this stage changes f_G's weights (if it runs any epochs)."""
        if stage == 0:
            return _stage0_uses_glance(self.cfg.stage0) and not self._glance_frozen(0)
        return stage != 2 and not self._glance_frozen(stage)

    def _keep_glance_outputs(self, keep: bool) -> None:
        """While f_G's weights stay fixed, its outputs for a glance it has seen come from memory
        (msgf.models.memo): the same scenes come back in every epoch and evaluation pass where
        the data is held in memory (data.cache). Off otherwise, and on CUDA, where hashing each
        glance on the host would cost more than the forward pass it saves."""
        encoder = self.model.global_encoder
        if not (keep and self.cfg.data.cache) or self.cuda:
            encoder.memo = None
        elif encoder.memo is None:
            encoder.memo = OutputMemo()

    @torch.no_grad()
    def _fit_locator(self) -> None:
        """Stage 0 with a frozen f_G: the locator fits on f_G's maps of the training images,
        computed once (locate.fit_locator). Every process fits the same locator from the same
        stream."""
        cfg, m = self.cfg, self.model
        started = time.time()
        m.eval()
        batches = loader(self.splits.train(0, 0), batch_size=cfg.data.eval_batch_size, shuffle=False, seed=0,
                         epoch=0, rank=0, world=1, workers=cfg.data.workers, drop_last=False)
        maps, objects = [], []
        for batch in tqdm(batches, desc="stage0 glance maps", unit="batch", leave=False,
                          disable=not (self.main and self.opt.progress)):
            images = batch["images"].to(self.device)
            with self.autocast():
                glances = ops.glance(images, cfg.glance_size, mean=m.config.mean, std=m.config.std)
                maps.append(m.global_encoder(glances)[0].float().cpu())
            distractors = batch.get("distractors") or [torch.zeros((0, 4))] * len(images)
            objects += [torch.cat([b, d]) for b, d in zip(batch["boxes"], distractors)]
        m.train()
        with torch.enable_grad():
            losses = fit_locator(self._locator, torch.cat(maps), objects, image_hw(images),
                                 epochs=cfg.stage0.locator_epochs, generator=generator(cfg.seed, 0, 0, 0, "locator"))
        self.log.print(f"stage0 locator: {len(losses)} passes over {len(objects)} glance maps "
                       f"({time.time() - started:.0f}s) | loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    def _stage0_locator(self):
        """Stage 0's locator head on f_G's map (msgf.train.locate), or None when not asked for.
        Seeded on its own so that adding it leaves every other initial weight unchanged."""
        if self.cfg.stage0.locate_weight <= 0:
            self._locator = None
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            locator = Locator(self.model.global_encoder.map_channels, hidden=self.cfg.stage0.locator_hidden)
        if self.position.locator is not None:
            locator.load_state_dict(self.position.locator)
        self._locator = locator.to(self.device)
        return self._locator

    def _optimizer(self, stage: int, groups):
        cfg = getattr(self.cfg, f"stage{stage}")
        if stage == 2:
            return torch.optim.Adam(groups[0]["params"], lr=cfg.lr), None
        if stage == 0:
            param_groups = [{"params": groups[0]["params"], "lr": cfg.lr}]
        else:
            param_groups = [{"params": groups[0]["params"], "lr": cfg.lr_encoders},
                            {"params": groups[1]["params"], "lr": cfg.lr_classifier}]
        optimizer = torch.optim.SGD(param_groups, momentum=cfg.momentum, nesterov=True,
                                    weight_decay=cfg.weight_decay)
        steps = cfg.epochs * self._iterations(stage)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
        return optimizer, scheduler

    def _iterations(self, stage: int) -> int:
        return len(self._train_loader(stage, 0))

    def _train_loader(self, stage: int, epoch: int):
        data = self.cfg.data
        dataset = self.splits.train(stage, epoch)
        return loader(dataset, batch_size=data.batch_size, shuffle=True,
                      seed=generator_seed(self.cfg.seed, stage), epoch=epoch, rank=self.world.rank,
                      world=self.world.size, workers=data.workers, drop_last=True)

    # ---------------------------------------------------------------------- training epochs

    def _train_epoch(self, stage, epoch, net, optimizer, scheduler) -> dict:
        batches = self._train_loader(stage, epoch)
        if len(batches) == 0:
            raise ValueError(f"the training split has fewer samples than one batch per process "
                             f"({self.cfg.data.batch_size} x {self.world.size})")
        bar = tqdm(batches, desc=f"stage{stage} epoch {epoch + 1}", unit="batch", leave=False,
                   disable=not (self.main and self.opt.progress))
        gen = generator(self.cfg.seed, stage, epoch, self.world.rank, "locations")
        sums: dict[str, float] = {}
        glance_batches = self._glance_batches(epoch) if stage == 0 else None
        local_batches = self._local_batches(epoch) if stage == 0 else None
        for batch in bar:
            images = batch["images"].to(self.device, non_blocking=True)
            labels = batch["labels"].to(self.device, non_blocking=True)
            if stage == 0:
                stats = self._stage0_step(net, optimizer, images, labels, batch["boxes"], batch.get("distractors"), gen,
                                          None if glance_batches is None else next(glance_batches),
                                          None if local_batches is None else next(local_batches))
            elif stage == 2:
                stats = self._stage2_step(optimizer, images, labels, batch["boxes"], gen)
            else:
                stats = self._supervised_step(stage, net, optimizer, images, labels, batch["boxes"],
                                              batch.get("distractors"), gen)
            if scheduler is not None:
                scheduler.step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k in ("loss", "reward")})
        return {k: v / len(batches) for k, v in sums.items()}

    def _scene_set(self):
        """Stage 0's GlanceSet: the first max(glance_samples, local_samples) training images as
        glances, with object windows twice the largest patch where f_L trains on them."""
        s0, cfg = self.cfg.stage0, self.cfg
        count = max(s0.glance_samples if _stage0_uses_glance(s0) else 0, s0.local_samples)
        region = 2 * max(cfg.patch_sizes) if s0.local_samples > 0 else 0
        return self.splits.glances(cfg.glance_size, count, self.model.config.mean, self.model.config.std, region)

    def _endless(self, count: int, epoch: int, purpose: str, setting: str):
        """Batches of indices into the first `count` items of the scene set, endless: a new
        permutation per pass."""
        gen = generator(self.cfg.seed, 0, epoch, self.world.rank, purpose)
        size = self.cfg.data.batch_size
        if count < size:
            raise ValueError(f"stage0.{setting} ({count}) is smaller than one batch ({size})")
        while True:
            order = torch.randperm(count, generator=gen)
            for start in range(0, count - size + 1, size):
                yield order[start:start + size], gen

    def _glance_batches(self, epoch: int):
        """Stage 0's f_G batches from the scene set (`stage0.glance_samples`): random left-right
        flips; None to use the batch's own images."""
        s0 = self.cfg.stage0
        if s0.glance_samples <= 0 or not _stage0_uses_glance(s0):
            return None
        scenes = self._scene_set()
        count = min(s0.glance_samples, len(scenes))
        return ((*scenes.batch(indices, torch.rand(len(indices), generator=gen) < 0.5), scenes.image_hw)
                for indices, gen in self._endless(count, epoch, "glances", "glance_samples"))

    def _local_batches(self, epoch: int):
        """Stage 0's f_L batches from the scene set's object windows (`stage0.local_samples`);
        None to crop the batch's own images."""
        s0 = self.cfg.stage0
        if s0.local_samples <= 0:
            return None
        scenes = self._scene_set()
        batches = self._endless(min(s0.local_samples, len(scenes)), epoch, "regions", "local_samples")
        return (scenes.region_batch(indices) for indices, _ in batches)

    def _stage0_step(self, net, optimizer, images, labels, boxes, distractors, gen, glance_batch=None,
                     local_batch=None) -> dict:
        cfg, s0, m = self.cfg, self.cfg.stage0, self.model
        net.train()
        if s0.freeze_glance_encoder:
            m.global_encoder.eval()  # its BatchNorm statistics stay the pretrained ones
        size = self._stage0_crop_size(gen)
        # f_L's crops: from the scene set's object windows (local_samples), or this batch's images
        sources, crop_labels, crop_objects, crop_distractors = images, labels, boxes, distractors
        if local_batch is not None:
            sources, crop_labels, crop_objects = local_batch
            sources, crop_labels, crop_distractors = sources.to(self.device), crop_labels.to(self.device), None
        crop_boxes = torch.cat([training_crops(crop_objects, size, image_hw(sources), gen, s0.object_crops,
                                               crop_distractors)
                                for _ in range(s0.crops_per_image)]).to(self.device)
        crop_labels = crop_labels.repeat(s0.crops_per_image)
        with self.autocast():
            crops = ops.crop_resize(sources, crop_boxes, size, mean=m.config.mean, std=m.config.std).patches[0]
            if glance_batch is not None:  # f_G learns on the glance set, f_L on this batch's crops
                glances, glance_labels, objects, glance_hw = glance_batch
                glances, glance_labels = glances.to(self.device), glance_labels.to(self.device)
            else:
                glances = ops.glance(images, cfg.glance_size, mean=m.config.mean, std=m.config.std) \
                    if _stage0_uses_glance(s0) else None
                glance_labels, glance_hw = labels, image_hw(images)
                objects = boxes if distractors is None else [torch.cat([b, d]) for b, d in zip(boxes, distractors)]
            if cfg.channels_last and self.cuda:
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

    def _stage0_crop_size(self, gen) -> int:
        sizes = self.cfg.patch_sizes
        if self.cfg.stage0.crop_sizes == "smallest":
            return sizes[0]
        return sizes[int(torch.randint(len(sizes), (1,), generator=gen))]

    def _supervised_step(self, stage, net, optimizer, images, labels, boxes, distractors, gen) -> dict:
        cfg, m = self.cfg, self.model
        scfg = getattr(cfg, f"stage{stage}")
        n, steps = len(labels), cfg.T - 1
        sizes = torch.tensor(cfg.patch_sizes)[torch.randint(len(cfg.patch_sizes), (n, steps), generator=gen)]
        # stage I: uniformly random locations; stage III: the (fixed) policy's means
        locs = None
        if stage == 1:
            locs = torch.rand((n, steps, 2), generator=gen)
            if scfg.object_location_fraction > 0:
                targets = boxes if distractors is None else \
                    [b if len(b) else d for b, d in zip(boxes, distractors)]  # EMPTY scenes: a decoy
                locs = object_locations(locs, targets, sizes, image_hw(images), gen, scfg.object_location_fraction)
            locs = locs.to(self.device)
        m.train()
        if self._glance_frozen(stage):
            m.global_encoder.eval()  # its BatchNorm statistics stay as stage 0 left them
        with self.autocast():
            states = net(images, sizes, locs)
            losses = [F.cross_entropy(s.logits.float(), labels)
                      + scfg.aux_weight * F.cross_entropy(m.aux_logits(s).float(), labels) for s in states]
            loss = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            last_acc = float((states[-1].logits.argmax(1) == labels).float().mean())
        return {"loss": float(loss.detach()), "accuracy_last_step": last_acc}

    def _stage2_step(self, optimizer, images, labels, boxes, gen) -> dict:
        cfg, m = self.cfg, self.model
        n, steps = len(labels), cfg.T - 1
        sizes = torch.tensor(cfg.patch_sizes)[torch.randint(len(cfg.patch_sizes), (n, steps), generator=gen)]
        m.eval()  # encoders and classifier frozen, BatchNorm statistics included
        mask = torch.tensor([len(b) > 0 for b in boxes], device=self.device) \
            if cfg.stage2.reward_only_with_boxes else None
        rollout = ppo.collect_rollout(m, images, labels, sizes.to(self.device), cfg.stage2, gen, self.autocast, mask)
        m.policy.train()
        stats = ppo.ppo_update(m.policy, optimizer, rollout, cfg.stage2, m.config.location_std, gen,
                               distributed.average_gradients(self.world))
        stats["reward"] = float(rollout.rewards.sum(0).mean())
        return stats

    # ---------------------------------------------------------------------------- evaluation

    def _eval_batches(self, which: str):
        dataset = self.splits.evaluation(which)
        # every process evaluates its own interleaved shard; the sums are all-reduced
        shard = torch.utils.data.Subset(dataset, range(self.world.rank, len(dataset), self.world.size))
        from msgf.train.data import collate

        return torch.utils.data.DataLoader(shard, batch_size=self.cfg.data.eval_batch_size, shuffle=False,
                                           num_workers=self.cfg.data.workers, collate_fn=collate)

    def _steps_summary(self, which: str, sources, seed_stage: int) -> dict:
        batches = self._eval_batches(which)
        gen = generator(self.cfg.seed, 100 + seed_stage, 0, self.world.rank, "locations")
        with tqdm(total=len(batches), desc=f"evaluate {which}", unit="batch", leave=False,
                  disable=not (self.main and self.opt.progress)) as bar:
            tally = evaluate_steps(self.model, batches, device=self.device, generator=gen, autocast=self.autocast,
                                   sources=sources, progress=bar)
        total = StepTally(self.cfg.T, self.cfg.patch_sizes)
        total.load_tensor(distributed.all_reduce_sum(self.world, tally.as_tensor()))
        return total.summary()

    def _validate(self, stage: int, epoch: int) -> dict:
        if stage == 0:
            return self._validate_stage0()
        sources = {1: ("random",), 2: ("policy", "random"), 3: ("policy",)}[stage]
        summary = self._steps_summary("val", sources, stage)
        curve = summary["accuracy_random" if stage == 1 else "accuracy_policy"]
        # the best epoch has the highest accuracy averaged over steps and patch sizes
        summary["score"] = sum(curve) / len(curve)
        return summary

    @torch.no_grad()
    def _validate_stage0(self) -> dict:
        cfg, m = self.cfg, self.model
        m.eval()
        size = cfg.patch_sizes[0] if cfg.stage0.crop_sizes == "smallest" else cfg.patch_sizes[len(cfg.patch_sizes) // 2]
        locator = self._locator
        # glance correct, crop correct, images, top cell holds the object, images with an object
        sums = torch.zeros(5, dtype=torch.float64)
        for batch in self._eval_batches("val"):
            images, labels = batch["images"].to(self.device), batch["labels"].to(self.device)
            boxes = centred_crops(batch["boxes"], size, image_hw(images)).to(self.device)
            with self.autocast():
                glances = ops.glance(images, cfg.glance_size, mean=m.config.mean, std=m.config.std)
                crops = ops.crop_resize(images, boxes, size, mean=m.config.mean, std=m.config.std).patches[0]
                fmap, pooled = m.global_encoder(glances)
                g = m.aux_heads[0](pooled).argmax(1)
                c = m.aux_heads[1](m.local_encoder(crops)[1]).argmax(1)
            located = (0, 0)
            if locator is not None:
                where = locator(fmap)
                targets = locate_targets(batch["boxes"], image_hw(images), tuple(where.shape[-2:]))[0]
                located = top_cell_hits(where, targets)
            sums += torch.tensor([float((g == labels).sum()), float((c == labels).sum()), len(labels), *located],
                                 dtype=torch.float64)
        sums = distributed.all_reduce_sum(self.world, sums)
        glance_acc, crop_acc = float(sums[0] / sums[2]), float(sums[1] / sums[2])
        m.train()
        result = {f"object_crop_accuracy_{size}": crop_acc, "score": crop_acc}
        if cfg.stage0.train_glance:
            result.update(glance_accuracy=glance_acc, score=(glance_acc + crop_acc) / 2)
        if locator is not None and sums[4] > 0:
            # how often f_G's most likely cell holds the annotated object; decoys share the
            # other likely cells, so 1 is out of reach where scenes hold several
            located = float(sums[3] / sums[4])
            result["glance_top_cell_holds_object"] = located
            result["score"] = (result["score"] + located) / 2
        return result

    def _test_summary(self, stage: int) -> dict:
        return self._steps_summary("test", ("policy", "random"), 50 + stage)

    def _epoch_line(self, name, epoch, epochs, train_stats, val, score, seconds) -> str:
        parts = [f"{name} epoch {epoch + 1}/{epochs} ({seconds:.0f}s)"]
        parts += [f"{k} {v:.4f}" for k, v in train_stats.items() if k in ("loss", "reward")]
        if "accuracy_policy" in val:
            for key in ("accuracy_random", "accuracy_policy"):
                if any(val[key]):
                    parts.append(f"val {key.split('_')[1]} acc/step " + " ".join(f"{a:.3f}" for a in val[key]))
            for key in ("hit_rate_policy", "hit_rate_random"):
                if val[key] and val[key][0] is not None and any(val[key]):
                    parts.append(f"{key.replace('_rate', '')} " + " ".join(f"{h:.3f}" for h in val[key]))
            if self.cfg.T > 2 and any(val["accuracy_policy"]):
                parts.append("repeat_policy " + " ".join(f"{r:.3f}" for r in val["repeat_rate_policy"][1:]))
        else:
            parts += [f"val {k} {v:.4f}" for k, v in val.items()]
        parts.append(f"score {score:.4f}")
        return " | ".join(parts)

    # ------------------------------------------------------------------------------ the end

    def _finish(self) -> dict:
        from threshold_search import format_macs

        m = self.model.eval()
        table = m.macs_table()
        summary = {"config": self.cfg.to_dict(), "stages": list(self.stages), "results": self.position.results,
                   "macs_table": {str(k): v for k, v in table.items()}, "history": self.position.history,
                   "world_size": self.world.size}
        last = f"stage{self.stages[-1]}" if self.stages else None
        measured = [f"stage{s}" for s in self.stages if f"stage{s}" in self.position.results]
        if self.main:
            self.log.print("MACs per step: " + "  ".join(
                f"{k}: {format_macs(v)}" for k, v in table.items()))
            if measured:
                self.log.print(format_steps(f"final ({measured[-1]}) on the test split",
                                            self.position.results[measured[-1]], m.config))
            save_checkpoint(m, self.out / "model.ckpt", training=_plain_json(summary))
            if self.cfg.export_trajectories and last is not None and last != "stage0":
                from msgf.engine import export_trajectories

                for which in ("val", "test"):
                    export_trajectories(m, _unsharded(self, which), self.out / f"{which}_trajectories.npz",
                                        progress=self.opt.progress)
            (self.out / "summary.json").write_text(json.dumps(_plain_json(summary), indent=2) + "\n")
            self.log.print(f"wrote {self.out / 'model.ckpt'}")
        distributed.barrier(self.world)
        return summary


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


def _denormals_flushed() -> bool:
    # torch has no getter for the flag: a product that should be subnormal tells
    return float(torch.tensor([1e-30], dtype=torch.float32) * 1e-10) == 0.0


def _stage0_uses_glance(stage0) -> bool:
    """Whether stage 0's f_L epochs also run f_G (the locator is fitted apart with locator_epochs)."""
    return stage0.train_glance or (stage0.locate_weight > 0 and stage0.locator_epochs == 0)


def _unsharded(trainer: Trainer, which: str):
    from msgf.train.data import collate

    return torch.utils.data.DataLoader(trainer.splits.evaluation(which), batch_size=trainer.cfg.data.eval_batch_size,
                                       shuffle=False, num_workers=trainer.cfg.data.workers, collate_fn=collate)


def generator_seed(seed: int, stage: int) -> int:
    from msgf.train.data import stream_seed

    return stream_seed(seed, stage, 0, 0, "shuffle") % (1 << 31)


def training_crops(boxes: list, size: int, hw: tuple[int, int], gen: torch.Generator, object_crops: bool,
                   distractors: list | None = None):
    """(B, 5) crop boxes of side `size`: containing an object box (random offset) where the
    sample has one and object_crops is set; else containing one of its distractor boxes (hard
    negatives, where given); anywhere in the image otherwise."""
    height, width = hw
    rows = []
    for b, sample_boxes in enumerate(boxes):
        top_range, left_range = (0, height - size), (0, width - size)
        if object_crops and not len(sample_boxes) and distractors is not None:
            sample_boxes = distractors[b]
        if object_crops and len(sample_boxes):
            pick = int(torch.randint(len(sample_boxes), (1,), generator=gen))
            x0, y0, x1, y1 = (float(v) for v in sample_boxes[pick])
            left_range = _containing(x0, x1, size, width)
            top_range = _containing(y0, y1, size, height)
        top = int(torch.randint(top_range[0], top_range[1] + 1, (1,), generator=gen))
        left = int(torch.randint(left_range[0], left_range[1] + 1, (1,), generator=gen))
        rows.append([b, left, top, left + size, top + size])
    return torch.tensor(rows, dtype=torch.float32)


def object_locations(locs, boxes: list, sizes, hw: tuple[int, int], gen: torch.Generator, fraction: float):
    """locs (B, steps, 2) with a `fraction` of the entries of samples that have an object box
    replaced by a uniformly random location whose patch (side sizes[b, t]) contains that box."""
    height, width = hw
    locs = locs.clone()
    coins = torch.rand(locs.shape[:2], generator=gen)
    offsets = torch.rand((*locs.shape[:2], 2), generator=gen)  # drawn for every entry: same stream either way
    for b, sample_boxes in enumerate(boxes):
        if not len(sample_boxes):
            continue
        x0, y0, x1, y1 = (float(v) for v in sample_boxes[0])
        for t in range(locs.shape[1]):
            if coins[b, t] >= fraction:
                continue
            size = int(sizes[b, t])
            (top_lo, top_hi), (left_lo, left_hi) = _containing(y0, y1, size, height), _containing(x0, x1, size, width)
            top = top_lo + int(offsets[b, t, 0] * (top_hi - top_lo + 1) - 1e-9) if top_hi > top_lo else top_lo
            left = left_lo + int(offsets[b, t, 1] * (left_hi - left_lo + 1) - 1e-9) if left_hi > left_lo else left_lo
            # focus_boxes places top = floor(row * (H - P)): aim at the middle of that pixel
            locs[b, t, 0] = min((top + 0.5) / max(height - size, 1), 1.0)
            locs[b, t, 1] = min((left + 0.5) / max(width - size, 1), 1.0)
    return locs


def _containing(lo: float, hi: float, size: int, extent: int) -> tuple[int, int]:
    """Start positions of a window of `size` in [0, extent) that contains [lo, hi]."""
    first, last = max(0, math.ceil(hi) - size), min(int(math.floor(lo)), extent - size)
    if first > last:  # the object is larger than the window: centre on it
        start = int(min(max(round((lo + hi) / 2 - size / 2), 0), extent - size))
        return start, start
    return first, last


def centred_crops(boxes: list, size: int, hw: tuple[int, int]):
    """(B, 5) crop boxes centred on the first object box, or on the image centre without one."""
    height, width = hw
    rows = []
    for b, sample_boxes in enumerate(boxes):
        if len(sample_boxes):
            x0, y0, x1, y1 = (float(v) for v in sample_boxes[0])
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        else:
            cx, cy = width / 2, height / 2
        left = int(min(max(round(cx - size / 2), 0), width - size))
        top = int(min(max(round(cy - size / 2), 0), height - size))
        rows.append([b, left, top, left + size, top + size])
    return torch.tensor(rows, dtype=torch.float32)


def format_steps(title: str, summary: dict, config) -> str:
    """Accuracy at each step t (per patch size) and hit rates, policy vs random locations."""
    lines = [f"{title} ({summary['num_samples']} images, {summary['num_with_box']} with a box):"]
    steps = "  ".join(f"t={t}" for t in range(1, config.T + 1))
    lines.append(f"  {'patch':>6} {'locations':>9}  accuracy per step ({steps})    hit rate per focus step"
                 + ("    repeat rate from step 3" if config.T > 2 else ""))
    for size, entry in summary["sizes"].items():
        for source in ("policy", "random"):
            acc = " ".join(f"{a:.4f}" for a in entry[f"accuracy_{source}"])
            hits = entry[f"hit_rate_{source}"]
            hit = " ".join("  -   " if h is None else f"{h:.4f}" for h in hits)
            repeats = " ".join(f"{r:.4f}" for r in entry[f"repeat_rate_{source}"][1:])
            lines.append(f"  {size:>6} {source:>9}  {acc}    {hit}" + (f"    {repeats}" if repeats else ""))
    return "\n".join(lines)


def _plain_json(value):
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
