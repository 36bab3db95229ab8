"""Where a run stands, and its train_state.ckpt: what --resume continues from."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from msgf.checkpoint import read_checkpoint, save_checkpoint
from msgf.train.presets import TrainConfig

STATE_FILE = "train_state.ckpt"


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
    stage_state: dict | None = None  # what the stage holds outside the model (stage 0's locator)

    @classmethod
    def from_plain(cls, plain: dict) -> Position:
        plain = dict(plain)
        if "locator" in plain:  # written before stages kept their own state
            plain["stage_state"] = plain.pop("locator")
        return cls(**plain)

    def to_plain(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def save_state(path: Path, model, cfg: TrainConfig, stages: tuple[int, ...], position: Position) -> None:
    """The model's weights and the run's position, written atomically (msgf.checkpoint)."""
    state = {"config": cfg.to_dict(), "stages": list(stages), "position": position.to_plain()}
    save_checkpoint(model, path, train_state=state)


def load_state(path: Path, model, cfg: TrainConfig, stages: tuple[int, ...]) -> Position:
    """Load the weights `path` holds into `model`; the position to continue from. Refuses a state
    written by a run with another config or other stages."""
    payload = read_checkpoint(path)
    state = payload["extra"]["train_state"]
    if state["config"] != cfg.to_dict() or list(state["stages"]) != list(stages):
        raise ValueError(f"{path} belongs to a run with another config or stages; "
                         f"use another --out or drop --resume")
    model.load_state_dict(payload["state_dict"])
    return Position.from_plain(state["position"])
