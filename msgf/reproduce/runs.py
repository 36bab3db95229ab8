"""Train each GFNet of a plan in WORKDIR/<run name>/, or reuse it when it already finished.

A run is finished when WORKDIR/<name>/done.json exists: written atomically only after
`msgf.train.loop.train` returned, holding the run's config and wall time. Rerunning skips
finished runs, and resumes an unfinished one from its train_state.ckpt (RunOptions(resume=True)
starts afresh where there is none). A done.json whose config differs from the plan's is an
error: the workdir belongs to another plan.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from msgf.atomic import atomic_write
from msgf.reproduce.plan import GFNetRun

DONE = "done.json"


@dataclass(frozen=True)
class RunResult:
    name: str
    path: Path
    summary: dict  # the run's summary.json
    seconds: float  # wall time of the training (of the earlier invocation when reused)
    reused: bool


def read_done(path: Path, config: dict) -> dict | None:
    """The done marker of run directory `path`, or None; ValueError if it is for another config."""
    marker = Path(path) / DONE
    if not marker.exists():
        return None
    done = json.loads(marker.read_text())
    if done.get("config") != config:
        raise ValueError(f"workdir: {marker} records a run with another config; "
                         f"use another --workdir (or delete {path})")
    return done


def write_done(path: Path, config: dict, seconds: float, **extra) -> None:
    with atomic_write(Path(path) / DONE, "w") as file:
        json.dump({"config": config, "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra},
                  file, indent=2)
        file.write("\n")


def ensure_run(run: GFNetRun, workdir: Path, *, progress: bool = True, log=print, train=None) -> RunResult:
    """Train `run` in workdir/run.name unless it finished earlier; its summary either way.

    `train` defaults to msgf.train.loop.train (a test may pass a stand-in)."""
    from msgf.train.loop import RunOptions

    if train is None:
        from msgf.train.loop import train
    config = run.config()
    plain = json.loads(json.dumps(config.to_dict()))  # tuples as lists: as done.json stores them
    out = Path(workdir) / run.name
    done = read_done(out, plain)
    if done is not None:
        log(f"{run.name}: finished earlier ({done['seconds'] / 60:.1f} min), reused")
        return RunResult(run.name, out, _summary(out), done["seconds"], True)
    init = None
    if run.init is not None:
        source, checkpoint = run.init
        init = Path(workdir) / source / checkpoint
        if not (Path(workdir) / source / DONE).exists():
            raise ValueError(f"{run.name} starts from {init}, but run {source!r} has not finished")
    resuming = (out / "train_state.ckpt").exists()
    stages = ",".join(map(str, run.stages))
    log(f"{run.name}: {'resuming' if resuming else 'training'} stages {stages} in {out}")
    started = time.time()
    train(config, RunOptions(out=out, resume=True, stages=tuple(run.stages), init=init, progress=progress))
    seconds = time.time() - started
    write_done(out, plain, seconds, resumed=resuming)
    log(f"{run.name}: done in {seconds / 60:.1f} min")
    return RunResult(run.name, out, _summary(out), seconds, False)


def _summary(out: Path) -> dict:
    path = out / "summary.json"
    if not path.exists():
        raise ValueError(f"workdir: {out} is marked done but has no summary.json")
    return json.loads(path.read_text())
