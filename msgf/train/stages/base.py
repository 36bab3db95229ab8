"""What a stage is to the generic loop (msgf.train.loop).

A stage says, in one module, what it trains and what it freezes (`prepare`), how one step goes
(`step`), how an epoch is validated (`validate`: its "score" picks the stage's best epoch) and
what it leaves behind (`finish`, `test`). The loop does the rest for every stage alike: epochs,
resume, best-epoch keeping, logs, DistributedDataParallel, checkpoints.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from msgf.train.data import generator_seed, loader
from msgf.train.evaluation import steps_summary


@dataclass
class Trainable:
    """What `prepare` hands the loop: the module whose parameters train (the loop wraps it in
    DistributedDataParallel where the stage is `replicated`), its optimizer and its
    per-step learning-rate schedule (None for a constant rate)."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None


class Stage(ABC):
    number: int  # the stage's place in the method (0, I, II, III): its name and its random streams
    replicated = True  # DDP-wrap `prepare`'s module in distributed runs
    # Whether the stage runs whole glance-and-focus episodes: it can keep the weights it started
    # from (TrainConfig.keep_incoming_weights), is measured step by step on the test split when
    # it ends, and leaves a model worth exporting trajectories of.
    episodic = True

    def __init__(self, run):
        self.run = run  # the Trainer: cfg, model, device, world, autocast, splits, log
        self.cfg, self.model = run.cfg, run.model
        self.settings = getattr(run.cfg, f"stage{self.number}")

    @property
    def name(self) -> str:
        return f"stage{self.number}"

    @property
    def epochs(self) -> int:
        return self.settings.epochs

    @property
    @abstractmethod
    def trains_glance(self) -> bool:
        """Whether the stage changes f_G's weights (if it runs any epochs)."""

    @abstractmethod
    def prepare(self) -> Trainable:
        """Freeze what the stage does not train; build its optimizer."""

    def start_epoch(self, epoch: int) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Called before each epoch's first step."""

    @abstractmethod
    def step(self, net: nn.Module, optimizer, batch: dict, gen: torch.Generator) -> dict:
        """One training step on `batch` (images and labels on the device, boxes on the host);
        `net` is `prepare`'s module, wrapped for DDP where it is. Returns floats to average."""

    def end_epoch(self) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Called after each epoch's last step, before validation."""

    @abstractmethod
    def validate(self) -> dict:
        """Validation figures; "score" (higher is better) picks the stage's best epoch."""

    def finish(self) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Called once the stage's best weights are back in the model."""

    def test(self) -> dict:
        """The stage's best weights measured on the test split, step by step."""
        return steps_summary(self.run, "test", ("policy", "random"), 50 + self.number)

    def state_dict(self) -> dict | None:
        """What the stage holds outside the model, for --resume."""
        return None

    def load_state_dict(self, state: dict) -> None:
        raise ValueError(f"{self.name} keeps no state of its own")

    # ------------------------------------------------------------------ shared by stages

    def batches(self, epoch: int):
        """This process's shuffled training batches for `epoch` (the last partial one dropped)."""
        data = self.cfg.data
        return loader(self.run.splits.train(self.number, epoch), batch_size=data.batch_size, shuffle=True,
                      seed=generator_seed(self.cfg.seed, self.number), epoch=epoch, rank=self.run.world.rank,
                      world=self.run.world.size, workers=data.workers, drop_last=True)

    def train_only(self, parameters) -> list:
        """Freeze every model parameter but `parameters` (the loop unfreezes all after the stage)."""
        parameters = list(parameters)
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in parameters:
            p.requires_grad_(True)
        return parameters

    def sgd_cosine(self, param_groups: list[dict]):
        """SGD with Nesterov momentum and its cosine schedule, annealing the learning rate to zero over
        the stage's steps."""
        s = self.settings
        optimizer = torch.optim.SGD(param_groups, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay)
        steps = s.epochs * len(self.batches(0))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
        return optimizer, scheduler
