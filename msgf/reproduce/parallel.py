"""`msgf reproduce --jobs N`: the plan's models trained by N processes at once.

Each job is a spawned process (a fresh interpreter, torch limited to its share of the threads)
that trains one model at a time: `ensure_run` for a GFNet, `ensure_static` for a baseline, so
models are cached and resumed exactly as with one job. A task starts once the runs it starts
from have finished (the fixed-size and increments runs need MS-GFNet's checkpoints), in the
order given: put the longest first. At most one *heavy* task (a GFNet run: it keeps its
splits in memory, 8.4 GB of 960x1280 scenes for the cpu plan) runs at a time; the static
baselines render their scenes as they go (synthsigns renders ~170 full-resolution scenes per
second; a static model at full resolution trains on ~3 per second), so two jobs fit in 24 GB.

When a task fails, no new task starts; the running ones finish (their models are cached for
the rerun) and then the first error is raised.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

from msgf.reproduce.plan import MS_RUN


@dataclass(frozen=True)
class Task:
    name: str
    call: Callable[[], object]  # picklable: a module-level function or a partial of one
    heavy: bool = False  # at most one heavy task runs at a time
    after: tuple[str, ...] = ()  # names of the tasks that must finish first


def run_tasks(tasks: list[Task], jobs: int, *, log=print, context: str = "spawn") -> dict:
    """Run `tasks` in `jobs` processes; {name: what its call returned}."""
    names = {task.name for task in tasks}
    for task in tasks:
        unknown = [name for name in task.after if name not in names]
        if unknown:
            raise ValueError(f"task {task.name!r} waits on unknown tasks {unknown}")
    results, pending, running, errors = {}, list(tasks), {}, []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(context)) as pool:
        while running or (pending and not errors):
            for task in [] if errors else list(pending):
                if len(running) >= jobs:
                    break
                waiting = any(name not in results for name in task.after)
                if waiting or (task.heavy and any(t.heavy for t in running.values())):
                    continue
                pending.remove(task)
                running[pool.submit(task.call)] = task
            if not running:  # every pending task waits on one that can no longer finish
                raise ValueError(f"tasks {[t.name for t in pending]} wait on each other")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    results[task.name] = future.result()
                except Exception as error:  # noqa: BLE001 - re-raised once the running jobs are done
                    log(f"{task.name} failed: {error!r}; no new task starts, the running ones finish")
                    errors.append(error)
    if errors:
        raise errors[0]
    return results


def train_models(plan, workdir: Path, jobs: int, *, threads: int, log=print) -> tuple[dict, list[dict]]:
    """Every GFNet run and static baseline of `plan` in `jobs` processes of `threads` threads;
    (runs {name: RunResult} in the plan's order, static results in the plan's order)."""
    workdir, config = Path(workdir), plan.base_config()
    gfnet = plan.gfnet_runs()

    def gfnet_task(spec) -> Task:
        return Task(spec.name, partial(_gfnet, spec, workdir, threads), heavy=True,
                    after=() if spec.init is None else (spec.init[0],))

    def static_task(spec) -> Task:
        # a pooled baseline reads MS-GFNet's stage-0 f_L (msgf.reproduce.pooled)
        return Task(spec.name, partial(_static, spec, config, workdir, threads),
                    after=(MS_RUN,) if spec.kind == "pooled" else ())

    # the longest static baseline beside MS-GFNet, so that both jobs are busy from the start
    by_cost = sorted(plan.static, key=lambda s: s.size[0] * s.size[1] * s.epochs, reverse=True)
    tasks = [gfnet_task(gfnet[0]), *map(static_task, by_cost[:1]), *map(gfnet_task, gfnet[1:]),
             *map(static_task, by_cost[1:])]
    results = run_tasks(tasks, jobs, log=log)
    return {spec.name: results[spec.name] for spec in gfnet}, [results[spec.name] for spec in plan.static]


def _gfnet(spec, workdir: Path, threads: int):
    import torch

    from msgf.reproduce.runs import ensure_run

    torch.set_num_threads(threads)
    return ensure_run(spec, workdir, progress=False, log=partial(_print, spec.name))


def _static(spec, config, workdir: Path, threads: int) -> dict:
    import torch

    from msgf.reproduce.static import ensure_static
    from msgf.train.data import Splits

    torch.set_num_threads(threads)
    # the same scenes as the cached splits (the split's items depend on the seed and index only)
    splits = Splits(replace(config.data, cache=False), config.seed, progress=False)
    return ensure_static(spec, config, splits, workdir, progress=False, log=partial(_print, spec.name))


def _print(name: str, message: str) -> None:
    print(message if message.startswith(name) else f"{name}: {message}", flush=True)
