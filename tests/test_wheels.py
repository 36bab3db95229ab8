"""The wheels as a new user gets them (issue 20): `make wheel`'s msgf and threshold-search
wheels installed into a fresh venv, outside the source tree, with no compiler on PATH and
source builds refused, then the command line run end to end from there.

Slow (minutes: torch and its CUDA libraries install into the new venv). `make wheel-check`
builds dist/ and runs this file; on its own it builds the wheels into a temporary folder, or
takes them from $MSGF_WHEEL_DIR.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]

REPO = Path(__file__).resolve().parents[1]
COMPILERS = ("cc", "c++", "gcc", "g++", "clang", "clang++", "nvcc", "cmake", "ninja")


def _run(command, *, env=None, cwd=None, timeout=900) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)
    print(f"$ {' '.join(str(c) for c in command)}  -> exit {done.returncode}")
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    dist = os.environ.get("MSGF_WHEEL_DIR")
    if dist is None:
        dist = tmp_path_factory.mktemp("dist")
        _run(["make", "-C", REPO, "wheel", f"DIST={dist}"], timeout=1800)
    found = {}
    for name in ("msgf", "threshold_search"):
        matches = sorted(Path(dist).glob(f"{name}-*.whl"))
        assert len(matches) == 1, f"expected one {name} wheel in {dist}, found {matches}"
        found[name] = matches[0]
        print(f"{matches[0].name}: {matches[0].stat().st_size / 2**20:.2f} MiB")
    return found


@pytest.fixture(scope="module")
def user(tmp_path_factory, wheels):
    """(home, env): a fresh venv with only the wheels and their dependencies, and an
    environment whose PATH is that venv's bin/ alone, so no compiler can be found."""
    home = tmp_path_factory.mktemp("user")
    assert REPO not in home.parents
    venv = home / "venv"
    _run([sys.executable, "-m", "venv", venv])
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "CC", "CXX", "CUDACXX", "CMAKE_ARGS", "MSGF_CUDA", "VIRTUAL_ENV")}
    env["PATH"] = str(bin_dir)
    env["MPLCONFIGDIR"] = str(home / "mplconfig")  # its own matplotlib font cache, not the user's
    assert not [c for c in COMPILERS if shutil.which(c, path=env["PATH"])]
    # Only wheels (no sdist is built), the same torch as the project's pins, nothing from the repo.
    # --no-compile: byte-compiling torch's and scipy's files is most of pip's CPU time here.
    _run([bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-compile", "--only-binary", ":all:",
          "-c", REPO / "constraints" / "pinned.txt", wheels["msgf"], wheels["threshold_search"]],
         env=env, cwd=home, timeout=3600)
    versions = _run([bin_dir / "python", "-m", "pip", "freeze"], env=env, cwd=home).stdout
    print("\n".join(line for line in versions.splitlines()
                    if line.split("==")[0].lower() in ("msgf", "threshold-search", "torch", "torchvision")))
    return home, env


def test_cli_help_and_version(user, wheels):
    home, env = user
    help_text = _run(["msgf", "--help"], env=env, cwd=home).stdout
    print(help_text)
    for command in ("train", "search-thresholds", "evaluate", "infer"):
        assert command in help_text
    version = _run(["msgf", "--version"], env=env, cwd=home).stdout.strip()
    print(version)
    assert version == f"msgf {wheels['msgf'].name.split('-')[1]}"


def test_the_installed_extension_loads_from_the_venv(user, wheels):
    home, env = user
    probe = ("import json, msgf, msgf.ops, torch; from msgf import _C; "
             "print(json.dumps({'msgf': msgf.__file__, 'extension': _C.__file__, 'torch': torch.__version__, "
             "'backends': msgf.ops.backends(), 'cpu_isa': _C.cpu_isa, 'has_cuda': bool(_C.has_cuda)}))")
    report = json.loads(_run(["python", "-c", probe], env=env, cwd=home).stdout.splitlines()[-1])
    print(json.dumps(report, indent=1))
    venv = home / "venv"
    assert Path(report["msgf"]).is_relative_to(venv) and Path(report["extension"]).is_relative_to(venv)
    assert report["backends"]["cpu"].startswith("c++")
    assert report["backends"]["cuda"] == ("cuda kernel" if report["has_cuda"] else
                                          "pytorch reference (built without nvcc)")
    if shutil.which("nvcc"):  # the machine that built the wheel had nvcc: MSGF_CUDA=AUTO compiled it in
        assert report["has_cuda"]
    print(_run(["ldd", report["extension"]]).stdout)


def test_train_smoke_then_search_thresholds(user):
    home, env = user
    out = home / "runs" / "smoke"
    # The smoke preset takes under 3 minutes on 2 idle cores; the timeout leaves room for a busy machine.
    _run(["msgf", "train", "--preset", "smoke", "--out", out, "--no-progress"], env=env, cwd=home, timeout=3600)
    val, test = out / "val_trajectories.npz", out / "test_trajectories.npz"
    assert (out / "model.ckpt").is_file() and val.is_file() and test.is_file()
    macs = np.load(val)["macs"]
    budget = f"{(macs.min() + macs.max()) / 2 / 1e6:.3f}M"  # between the glance alone and the longest path
    thresholds = home / "thresholds.json"
    searched = _run(["msgf", "search-thresholds", "--trajectories", val, "--test", test, "--budget", budget,
                     "--out", thresholds], env=env, cwd=home).stdout
    print(searched)
    rows = json.loads(thresholds.read_text())["results"]
    assert len(rows) == 1 and rows[0]["validation"]["macs"] <= float(budget[:-1]) * 1e6 * (1 + 1e-9)
    assert 0.0 <= rows[0]["test"]["accuracy"] <= 1.0
    assert not (home / "build").exists(), "something was built in the user's folder"


def test_the_readme_library_example_runs(user):
    """The Python example under README.md's "Use it as a library", as a user would paste it."""
    home, env = user
    section = (REPO / "README.md").read_text().split("## Use it as a library", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = home / "example.py"
    script.write_text(example)
    printed = _run(["python", script], env=env, cwd=home, timeout=3600).stdout
    print(printed)
    assert len([line for line in printed.splitlines() if "exit at step" in line]) == 4  # one per image
