"""`msgf reproduce` and benchmarks/reproduce.py: arguments and errors."""
import importlib.util
from pathlib import Path

import pytest

from msgf import cli

ROOT = Path(__file__).resolve().parents[2]


def test_registered_with_its_arguments():
    args = cli.build_parser().parse_args(["reproduce", "--preset", "tiny", "--workdir", "w", "--no-progress"])
    assert args.preset == "tiny" and args.workdir == Path("w") and args.out is None and args.no_progress
    assert args.jobs == 1 and cli.build_parser().parse_args(["reproduce", "--preset", "cpu", "--jobs", "2"]).jobs == 2


@pytest.mark.parametrize("argv", [["reproduce"], ["reproduce", "--preset", "huge"],
                                  ["reproduce", "--preset", "tiny", "--seed", "-2"],
                                  ["reproduce", "--preset", "tiny", "--jobs", "0"],
                                  ["reproduce", "--preset", "tiny", "--jobs", "two"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2 and "--" in capsys.readouterr().err


def test_a_workdir_that_is_a_file_is_an_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["reproduce", "--preset", "tiny", "--workdir", str(blocker)]) == 2
    assert "workdir" in capsys.readouterr().err


def test_the_benchmark_script_takes_the_same_arguments(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("reproduce_benchmark", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert module.main(["--preset", "tiny", "--workdir", str(blocker), "--out", str(tmp_path)]) == 2
    assert "workdir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--preset", "huge"])
