"""Runs are cached in the workdir: a finished run is skipped, an unfinished one resumed."""
import json

import pytest

from msgf.reproduce import plan as plans
from msgf.reproduce.runs import DONE, ensure_run


class FakeTrain:
    """Stands in for msgf.train.loop.train: records its calls, writes summary.json (or fails)."""

    def __init__(self, fail: bool = False):
        self.calls, self.fail = [], fail

    def __call__(self, config, options):
        self.calls.append(options)
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / "train_state.ckpt").write_text("state")
        if self.fail:
            raise KeyboardInterrupt  # killed mid-run
        (options.out / "summary.json").write_text(json.dumps({"config": config.to_dict(), "results": {}}))


@pytest.fixture
def runs():
    return {r.name: r for r in plans.plan("tiny").gfnet_runs()}


def test_a_finished_run_is_skipped(runs, tmp_path):
    train = FakeTrain()
    first = ensure_run(runs["ms"], tmp_path, train=train, log=lambda m: None)
    assert not first.reused and len(train.calls) == 1
    assert train.calls[0].resume is True and train.calls[0].stages == (0, 1, 2, 3)
    assert (tmp_path / "ms" / DONE).exists()
    lines = []
    again = ensure_run(runs["ms"], tmp_path, train=train, log=lines.append)
    assert again.reused and len(train.calls) == 1 and "reused" in lines[0]
    assert again.summary == first.summary


def test_an_interrupted_run_has_no_marker_and_is_resumed(runs, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        ensure_run(runs["ms"], tmp_path, train=FakeTrain(fail=True), log=lambda m: None)
    assert not (tmp_path / "ms" / DONE).exists()
    lines, train = [], FakeTrain()
    result = ensure_run(runs["ms"], tmp_path, train=train, log=lines.append)
    assert not result.reused and train.calls[0].resume is True
    assert lines[0].startswith("ms: resuming")
    assert json.loads((tmp_path / "ms" / DONE).read_text())["resumed"] is True


def test_a_marker_for_another_config_is_an_error(runs, tmp_path):
    ensure_run(runs["ms"], tmp_path, train=FakeTrain(), log=lambda m: None)
    other = {r.name: r for r in plans.plan("tiny", seed=1).gfnet_runs()}["ms"]
    with pytest.raises(ValueError, match="workdir"):
        ensure_run(other, tmp_path, train=FakeTrain(), log=lambda m: None)


@pytest.mark.parametrize("name, checkpoint, stages", [("ms-increments", "stage1.ckpt", (2,)),
                                                      ("fixed-48", "stage0.ckpt", (1, 2, 3))])
def test_runs_that_start_from_ms_wait_for_it(runs, tmp_path, name, checkpoint, stages):
    with pytest.raises(ValueError, match="has not finished"):
        ensure_run(runs[name], tmp_path, train=FakeTrain(), log=lambda m: None)
    ensure_run(runs["ms"], tmp_path, train=FakeTrain(), log=lambda m: None)
    train = FakeTrain()
    ensure_run(runs[name], tmp_path, train=train, log=lambda m: None)
    assert train.calls[0].init == tmp_path / "ms" / checkpoint and train.calls[0].stages == stages
