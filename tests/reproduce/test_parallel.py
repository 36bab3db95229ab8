"""msgf.reproduce.parallel: dependencies, one heavy task at a time, and failures that lose nothing.

Each task appends "start NAME" / "end NAME" lines to one file; the order of those lines is the
oracle (the scheduler never sees it)."""
import time
from functools import partial

import pytest

from msgf.reproduce.parallel import Task, run_tasks


def _work(journal, name, seconds=0.3, fail=False):
    with open(journal, "a") as file:
        file.write(f"start {name}\n")
    time.sleep(seconds)
    if fail:
        raise RuntimeError(f"{name} broke")
    with open(journal, "a") as file:
        file.write(f"end {name}\n")
    return name.upper()


def _events(journal):
    return [tuple(line.split()) for line in journal.read_text().splitlines()]


def _task(journal, name, *, heavy=False, after=(), seconds=0.3, fail=False):
    return Task(name, partial(_work, str(journal), name, seconds, fail), heavy=heavy, after=after)


def _overlap(events, a, b):
    position = {event: i for i, event in enumerate(events)}
    return position[("start", a)] < position[("end", b)] and position[("start", b)] < position[("end", a)]


def test_dependencies_and_heavy_tasks_are_respected(tmp_path):
    journal = tmp_path / "journal"
    tasks = [_task(journal, "ms", heavy=True), _task(journal, "static-big", seconds=0.8),
             _task(journal, "fixed-a", heavy=True, after=("ms",)), _task(journal, "fixed-b", heavy=True, after=("ms",)),
             _task(journal, "static-small")]
    results = run_tasks(tasks, 2, context="fork")
    assert results == {t.name: t.name.upper() for t in tasks}
    events = _events(journal)
    position = {event: i for i, event in enumerate(events)}
    for fixed in ("fixed-a", "fixed-b"):
        assert position[("end", "ms")] < position[("start", fixed)]
    assert not _overlap(events, "fixed-a", "fixed-b") and not _overlap(events, "ms", "fixed-a")
    assert _overlap(events, "ms", "static-big")  # two jobs: both busy from the start


def test_a_failure_starts_nothing_new_and_lets_the_running_task_finish(tmp_path):
    journal = tmp_path / "journal"
    tasks = [_task(journal, "broken", fail=True, seconds=0.1), _task(journal, "long", seconds=1.0),
             _task(journal, "later", after=("broken",)), _task(journal, "independent")]
    with pytest.raises(RuntimeError, match="broken broke"):
        run_tasks(tasks, 2, context="fork", log=lambda message: None)
    events = _events(journal)
    assert ("end", "long") in events  # finished (a real run's model would be cached for the rerun)
    assert ("start", "later") not in events and ("start", "independent") not in events


def test_unknown_dependencies_are_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        run_tasks([_task(tmp_path / "j", "a", after=("nope",))], 2, context="fork")

