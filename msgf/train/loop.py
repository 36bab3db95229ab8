"""The generic training loop: runs each requested stage (msgf.train.stages) epoch by epoch,
resumable and distributed.

After every epoch rank 0 writes `train_state.ckpt` (model weights, the stage's best weights so
far, optimizer and scheduler state, position, history) atomically, so a run killed at any moment
loses at most one epoch; after every stage it writes `stageN.ckpt` (the stage's best epoch), and
at the end `model.ckpt`, which `msgf evaluate` reads as is, plus validation/test trajectories
for `msgf search-thresholds` (msgf.train.outputs).

All randomness of an epoch comes from generators seeded by (seed, stage, epoch, rank), so a
resumed run repeats exactly what the uninterrupted run would have done (on CPU).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from msgf.checkpoint import save_checkpoint
from msgf.memory import release_memory
from msgf.models.memo import OutputMemo
from msgf.train import distributed
from msgf.train.data import Splits, generator
from msgf.train.evaluation import epoch_line, format_steps
from msgf.train.log import RunLog
from msgf.train.outputs import write_outputs
from msgf.train.presets import TrainConfig
from msgf.train.stages import STAGES, Stage
from msgf.train.state import STATE_FILE, Position, load_state, save_state
from msgf.train.weights import cpu_copy, initial_model


@dataclass
class RunOptions:
    out: Path
    resume: bool = False
    stages: tuple[int, ...] = tuple(STAGES)
    init: Path | None = None  # a model checkpoint (e.g. stage1.ckpt) to start from
    device: str | None = None
    progress: bool = True


def train(config: TrainConfig, options: RunOptions) -> dict:
    trainer = Trainer(config, options)
    try:
        return trainer.run()
    finally:
        trainer.close()


class Trainer:
    """A run: what every stage reads (cfg, model, device, world, autocast, splits, log, opt) and
    the loop that runs the stages."""

    def __init__(self, config: TrainConfig, options: RunOptions):
        if not all(isinstance(s, int) and not isinstance(s, bool) and s in STAGES for s in options.stages):
            raise ValueError(f"stages: expected stage numbers among {list(STAGES)}, got {list(options.stages)}")
        self.cfg, self.opt = config, options
        self.out = Path(options.out)
        self.world, self.device = distributed.init(options.device)
        self.main = self.world.is_main
        # which data serves each role; a file or images in two roles are refused before any output
        self.splits = Splits(config.data, config.seed, progress=self.main and options.progress)
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
        self.log = RunLog(self.out, enabled=self.main, append=options.resume)
        for line in self.splits.roles.lines(self.splits.counts()):
            self.log.print(line)
        self.stages = tuple(options.stages)
        self.state_path = self.out / STATE_FILE
        self.position = Position()
        self.model = initial_model(config, self.splits, options.init, self.log).to(self.device)
        if config.channels_last and self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        if options.resume and self.state_path.exists():
            self.position = load_state(self.state_path, self.model, config, self.stages, self.splits.record())
            pos = self.position
            where = f"stage{self.stages[pos.stage_pos]}" if pos.stage_pos < len(self.stages) else "done"
            self.log.print(f"resuming from {self.state_path}: {where} epoch {pos.epoch}")

    def _save_state(self) -> None:
        if self.main:
            save_state(self.state_path, self.model, self.cfg, self.stages, self.position, self.splits.record())
        distributed.barrier(self.world)

    def close(self) -> None:
        self.log.close()
        distributed.shutdown(self.world)
        if self._restore_flush:
            torch.set_flush_denormal(False)

    def run(self) -> dict:
        while self.position.stage_pos < len(self.stages):
            self._run_stage(STAGES[self.stages[self.position.stage_pos]](self))
        return write_outputs(self)

    def _run_stage(self, stage: Stage) -> None:
        pos = self.position
        self._keep_glance_outputs(not stage.trains_glance)
        if stage.epochs > 0:
            if pos.stage_state is not None:
                stage.load_state_dict(pos.stage_state)
            trainable = stage.prepare()
            net = trainable.module
            if self.world.distributed and stage.replicated:
                net = nn.parallel.DistributedDataParallel(net, device_ids=[self.device.index] if self.cuda else None)
            if pos.optimizer is not None:
                trainable.optimizer.load_state_dict(pos.optimizer)
                if trainable.scheduler is not None and pos.scheduler is not None:
                    trainable.scheduler.load_state_dict(pos.scheduler)
            if (self.cfg.keep_incoming_weights and stage.episodic and pos.epoch == 0 and pos.best_score is None
                    and self._incoming_weights_met_episodes()):
                pos.best_score = stage.validate()["score"]
                pos.best_state = cpu_copy(self.model)
                self.log.print(f"{stage.name}: the incoming weights score {pos.best_score:.4f} on validation; "
                               f"an epoch must beat that to replace them")
            while pos.epoch < stage.epochs:
                self._run_epoch(stage, net, trainable)
            for p in self.model.parameters():
                p.requires_grad_(True)
            if pos.best_state is not None:
                self.model.load_state_dict(pos.best_state)
            stage.finish()
        self._keep_glance_outputs(True)  # fixed from here to the next stage
        # a stage without epochs leaves the model as the last one's; without a test set there
        # are no test numbers (the log said so when the run started)
        if stage.episodic and stage.epochs > 0 and self.splits.has_test and self._tests(stage):
            test = stage.test()
            pos.results[stage.name] = test
            self.log.metrics(stage.name, stage.epochs, "test", test)
            self.log.print(format_steps(f"{stage.name} (best epoch) on the test set, {self.splits.describe('test')}",
                                        test, self.model.config))
        release_memory()
        if self.main:
            save_checkpoint(self.model, self.out / f"{stage.name}.ckpt",
                            training={"stage": stage.number, "best_val_score": pos.best_score,
                                      "splits": self.splits.record()})
        self.position = Position(stage_pos=pos.stage_pos + 1, history=pos.history, results=pos.results)
        self._save_state()

    def _incoming_weights_met_episodes(self) -> bool:
        """Whether the weights the current stage starts from were trained on whole episodes, by an
        episodic stage earlier in this run or before it (--init): only such weights are worth
        keeping. Stage I after stage 0 starts with f_C's glance head untrained; in cpu-demo
        they still won its random-location validation by noise (0.4740 against the epoch's
        0.4652), stage I was thrown away, and the final model read 3-5 points fewer test
        scenes (msgf/train/README.md)."""
        earlier = self.stages[:self.position.stage_pos]
        return self.opt.init is not None or any(
            STAGES[number].episodic and getattr(self.cfg, f"stage{number}").epochs > 0 for number in earlier)

    def _tests(self, stage: Stage) -> bool:
        """Whether `stage`'s model is measured on the test set (TrainConfig.test_stages)."""
        if self.cfg.test_stages == "all":
            return True
        later = self.stages[self.stages.index(stage.number) + 1:]
        return not any(getattr(self.cfg, f"stage{number}").epochs > 0 for number in later)

    def _run_epoch(self, stage: Stage, net: nn.Module, trainable) -> None:
        """Train one epoch, validate it, keep it if it is the stage's best, log it, checkpoint."""
        pos, epoch, started = self.position, self.position.epoch, time.time()
        train_stats = self._train_epoch(stage, epoch, net, trainable.optimizer, trainable.scheduler)
        # Each phase (an epoch's training, a validation or test pass, stage 0's scene set) leaves
        # freed activations and image batches that glibc keeps, in blocks the next phase's
        # tensors do not fit. Given back between phases (and while the scene set is encoded),
        # `make demo`'s largest process peaked at 3.7 GB instead of 4.9 GB.
        release_memory()
        distributed.broadcast_buffers(self.world, self.model)
        stage.end_epoch()
        val = stage.validate()
        release_memory()
        score = val.pop("score")
        if pos.best_score is None or score > pos.best_score:
            pos.best_score = score
            pos.best_state = cpu_copy(self.model)
        row = {"stage": stage.number, "epoch": epoch, "score": score, "seconds": round(time.time() - started, 1),
               **{f"train_{k}": v for k, v in train_stats.items()}}
        pos.history.append(row)
        self.log.metrics(stage.name, epoch, "train", train_stats)
        self.log.metrics(stage.name, epoch, "val", {**val, "score": score})
        self.log.print(epoch_line(stage.name, epoch, stage.epochs, train_stats, val, score, row["seconds"],
                                  self.cfg.T))
        pos.epoch = epoch + 1
        pos.optimizer = trainable.optimizer.state_dict()
        pos.scheduler = None if trainable.scheduler is None else trainable.scheduler.state_dict()
        pos.stage_state = stage.state_dict()
        self._save_state()

    def _train_epoch(self, stage: Stage, epoch: int, net: nn.Module, optimizer, scheduler) -> dict:
        batches = stage.batches(epoch)
        if len(batches) == 0:
            raise ValueError(f"the training split has fewer samples than one batch per process "
                             f"({self.cfg.data.batch_size} x {self.world.size})")
        bar = tqdm(batches, desc=f"{stage.name} epoch {epoch + 1}", unit="batch", leave=False,
                   disable=not (self.main and self.opt.progress))
        gen = generator(self.cfg.seed, stage.number, epoch, self.world.rank, "locations")
        stage.start_epoch(epoch)
        sums: dict[str, float] = {}
        for batch in bar:
            batch["images"] = batch["images"].to(self.device, non_blocking=True)
            batch["labels"] = batch["labels"].to(self.device, non_blocking=True)
            stats = stage.step(net, optimizer, batch, gen)
            if scheduler is not None:
                scheduler.step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k in ("loss", "reward")})
        return {k: v / len(batches) for k, v in sums.items()}

    def _keep_glance_outputs(self, keep: bool) -> None:
        """While f_G's weights stay fixed, its outputs for a glance it has seen come from memory
        (msgf.models.memo): the same scenes come back in every epoch and evaluation pass, whether
        they are held in memory (data.cache) or read again (rendered, decoded) identically each
        time. Off where the training images change every epoch (augmentation, fresh scenes),
        and on CUDA, where hashing each glance on the host would cost more than the forward
        pass it saves."""
        data = self.cfg.data
        repeats = data.cache or not (data.augment or data.fresh_scenes)
        encoder = self.model.global_encoder
        if not (keep and repeats) or self.cuda:
            encoder.memo = None
        elif encoder.memo is None:
            encoder.memo = OutputMemo()


def _denormals_flushed() -> bool:
    # torch has no getter for the flag: a product that should be subnormal tells
    return float(torch.tensor([1e-30], dtype=torch.float32) * 1e-10) == 0.0
