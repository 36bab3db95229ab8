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


def save_state(path: Path, model, cfg: TrainConfig, stages: tuple[int, ...], position: Position,
               splits: dict | None = None) -> None:
    """The model's weights, the run's position and what data served each role (Splits.record),
    written atomically (msgf.checkpoint)."""
    state = {"config": cfg.to_dict(), "stages": list(stages), "position": position.to_plain(), "splits": splits}
    save_checkpoint(model, path, train_state=state)


def load_state(path: Path, model, cfg: TrainConfig, stages: tuple[int, ...], splits: dict | None = None) -> Position:
    """Load the weights `path` holds into `model`; the position to continue from. Refuses a state
    written by a run with another config or other stages, or on data that changed since."""
    payload = read_checkpoint(path)
    state = payload["extra"]["train_state"]
    if _config(state["config"]) != cfg.to_dict() or list(state["stages"]) != list(stages):
        raise ValueError(f"{path} belongs to a run with another config or stages; "
                         f"use another --out or drop --resume")
    if state.get("splits") is not None and splits is not None and _files(state["splits"]) != _files(splits):
        raise ValueError(f"{path} belongs to a run on other data: {_files(state['splits'])} then, {_files(splits)} "
                         f"now (a changed training file would also hold out other validation images); "
                         f"use another --out or drop --resume")
    model.load_state_dict(payload["state_dict"])
    return Position.from_plain(state["position"])


def _config(saved: dict) -> dict:
    """A saved config as this version writes it: settings added since take their defaults, so a
    state written before them still resumes."""
    try:
        return TrainConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError):  # settings this version does not know: not the same config
        return saved


def _files(splits: dict) -> dict:
    """Each role's data and content hash: what must not change under a resumed run."""
    return {role: None if entry is None else (entry["source"], entry["sha256"])
            for role, entry in splits.items() if role in ("train", "val", "test")}
