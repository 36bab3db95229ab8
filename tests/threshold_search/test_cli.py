"""`msgf search-thresholds` end to end on generated trajectory files."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from msgf.cli import main
from threshold_search import Result, Trajectories, make_trajectories


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trajectories")
    make_trajectories(1500, 3, [96, 160], seed=1).save(folder / "val.npz")
    make_trajectories(1500, 3, [96, 160], seed=2).save(folder / "test.npz")
    return folder


def test_sweep_with_test_split_plot_and_json(files, tmp_path, capsys, oracle):
    out, plot = tmp_path / "thresholds.json", tmp_path / "curve.png"
    status = main(["search-thresholds", "--trajectories", str(files / "val.npz"), "--budget", "1.5G",
                   "--budget", "2500M", "--test", str(files / "test.npz"), "--seed", "3",
                   "--plot", str(plot), "--static", "ResNet-50 224px=4.1G,0.8", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "1.50G" in printed and "2.50G" in printed and "geometric" in printed
    report = json.loads(out.read_text())
    assert report["method"] == "ga" and report["seed"] == 3 and len(report["results"]) == 2
    test = Trajectories.load(files / "test.npz")
    val = Trajectories.load(files / "val.npz")
    for row, budget in zip(report["results"], [1.5e9, 2.5e9]):
        result = Result.from_dict(row)
        assert row["budget"] == budget and row["validation"]["macs"] <= budget
        # The reported numbers are what the thresholds really do, by the plain loop.
        assert oracle(val, result.thresholds) == pytest.approx((row["validation"]["accuracy"], row["validation"]["macs"]))
        assert oracle(test, result.thresholds) == pytest.approx((row["test"]["accuracy"], row["test"]["macs"]))
        assert row["accuracy"] >= row["geometric"]["accuracy"]
        baseline = Result.from_dict(row["geometric"])
        assert oracle(test, baseline.thresholds) == pytest.approx((row["geometric"]["test"]["accuracy"],
                                                                   row["geometric"]["test"]["macs"]))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_geometric_without_test_split(files, capsys):
    assert main(["search-thresholds", "--trajectories", str(files / "val.npz"), "--budget", "2G",
                 "--method", "geometric"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("method=geometric") and lines[-1].split("|")[2].split() == ["-", "-"]


@pytest.mark.parametrize("arguments,message", [
    (["--budget", "0.1G"], "below the glance cost"),
    (["--budget", "2G", "--trajectories", "missing.npz"], "missing.npz"),
])
def test_errors_are_reported_not_raised(files, capsys, arguments, message):
    arguments = (["--trajectories", str(files / "val.npz")] if "--trajectories" not in arguments else []) + arguments
    assert main(["search-thresholds", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_malformed_file_is_reported(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, sizes=np.array([96]), T=np.int64(2))
    assert main(["search-thresholds", "--trajectories", str(path), "--budget", "1G"]) == 2
    assert "missing field(s) labels" in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [["--budget", "1.5T"], ["--budget", "2G", "--static", "no-equals"], []])
def test_bad_arguments_exit_like_argparse(files, arguments):
    with pytest.raises(SystemExit) as exit_info:
        main(["search-thresholds", "--trajectories", str(files / "val.npz"), *arguments])
    assert exit_info.value.code == 2


def test_mismatched_test_split(files, tmp_path, capsys):
    make_trajectories(100, 3, [96, 128], seed=0).save(tmp_path / "other.npz")
    assert main(["search-thresholds", "--trajectories", str(files / "val.npz"), "--budget", "2G",
                 "--test", str(tmp_path / "other.npz")]) == 2
    assert "differ from the validation" in capsys.readouterr().err


def test_module_entry_point_in_a_subprocess(files, tmp_path):
    out = tmp_path / "out.json"
    completed = subprocess.run(
        [sys.executable, "-m", "msgf", "search-thresholds", "--trajectories", str(files / "val.npz"),
         "--budget", "2G", "--method", "exhaustive", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "2.00G" in completed.stdout
    assert json.loads(out.read_text())["results"][0]["method"] == "exhaustive"


def test_threshold_search_never_imports_torch():
    code = "import sys, threshold_search.search, threshold_search.plot; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
