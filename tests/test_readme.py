"""The READMEs' examples, run as a new user runs them (issue 31).

After `make demo`'s own command lines (`make demo-steps`, with a tiny model in DEMO_TRAIN), in a
folder holding the inputs the examples name (photos/, scan.tif, train/val/test.jsonl, sts/,
photo.jpg, val.npz, test.npz), the test runs in order:

1. README.md's "command line" block, then the other READMEs' ```bash blocks (BASH_BLOCKS), each
   line as written, in its own process; each must exit 0. Only the program is replaced (`msgf`
   by this interpreter's `-m msgf`, `torchrun` by `-m torch.distributed.run`), and a line's tag
   (in its comment) shortens it: `[long]` lines get LONG's flags for their command appended (the
   last value of a flag wins), `[processes]` lines run 2 processes, `[gpu]` lines `--device cpu`,
   `[slow]` lines are only parsed here and run in full by test_slow_lines_run (`-m slow`). A line
   identical to one run before is not run twice (msgf/deploy/README.md repeats README.md's export).
2. every ```python block of every README, each as a script in its own process; `train()` in them
   trains the same tiny recipe as the `[long]` lines (TINY_PRESET), with no epochs.

Renaming a documented flag or file, or a command whose outputs the next one cannot read, fails it.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A user's environment, less what an enclosing make (make test) or a DEMO_* variable would pass to
# `make demo-steps`: the demo runs with the Makefile's own budget, which the README's lines use.
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS", "DEMO_"))},
       "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
PROGRAMS = {"msgf": [sys.executable, "-m", "msgf"], "torchrun": [sys.executable, "-m", "torch.distributed.run"]}
TAGS = ("long", "processes", "gpu", "slow")

# The demo's model: the smoke recipe shrunk to 64x96 scenes and a 32 px glance, one epoch per stage.
TINY = ["--preset", "smoke", "--image-size", "64x96", "--glance", "32", "--sizes", "32,48", "--T", "3",
        "--batch-size", "16", "--no-progress"]
DEMO_TRAIN = [*TINY, "--train-samples", "48", "--val-samples", "24", "--test-samples", "24", "--epochs", "1,1,1,1"]
# What a [long] line gets appended, by its command: the same small sizes, and no epochs of training.
LONG = {
    ("msgf", "train"): [*TINY, "--train-samples", "16", "--val-samples", "8", "--test-samples", "8",
                        "--epochs", "0,0,0,0"],
    ("msgf", "evaluate"): ["--num-samples", "8", "--image-size", "96x128", "--no-progress"],
    ("msgf", "search-thresholds"): ["--num-samples", "16", "--image-size", "96x128"],
    ("msgf", "data"): ["--num", "2", "--size", "96x128", "--no-progress"],
}
# The same for `train(preset(...))` in the Python examples (msgf.train.preset's overrides).
TINY_PRESET = {"data.image_size": [64, 96], "glance_size": 32, "patch_sizes": [32, 48], "T": 3,
               "data.batch_size": 16, "data.train_samples": 16, "data.val_samples": 8, "data.test_samples": 8,
               **{f"stage{k}.epochs": 0 for k in range(4)}}
# Runs a Python example with msgf.train.preset adding TINY_PRESET (argv: example, overrides as JSON).
PYTHON_RUNNER = """
import json, runpy, sys
import msgf.train
preset, tiny = msgf.train.preset, json.loads(sys.argv[2])
tiny = {key: tuple(value) if isinstance(value, list) else value for key, value in tiny.items()}
msgf.train.preset = lambda name, **overrides: preset(name, **{**tiny, **overrides})
runpy.run_path(sys.argv[1], run_name="__main__")
"""
# README.md's block first (the others follow from what it leaves), then the others' command lines.
BASH_BLOCKS = [("README.md", "## The command line"), ("msgf/deploy/README.md", None),
               ("threshold_search/README.md", "From the command line")]


@dataclass(frozen=True)
class Line:
    text: str  # as the README shows it, continuation lines joined
    argv: tuple[str, ...]
    tags: frozenset[str]
    where: str  # README and line number, for messages


def fenced_blocks(path: Path, language: str, after: str | None = None) -> list[tuple[int, str]]:
    """(first line number, text) of each ```language block in `path`, from the line starting
    with `after` on (from the top without it)."""
    lines = path.read_text().splitlines()
    start = 0
    if after is not None:
        start = next((i for i, line in enumerate(lines) if line.startswith(after)), None)
        assert start is not None, f"{path.name} has no line starting with {after!r}"
    blocks, inside = [], None
    for number, line in enumerate(lines[start:], start=start + 1):
        if inside is None and line.strip() == f"```{language}":
            inside = (number + 1, [])
        elif inside is not None and line.strip() == "```":
            blocks.append((inside[0], "\n".join(inside[1])))
            inside = None
        elif inside is not None:
            inside[1].append(line)
    return blocks


def command_lines(path: Path, after: str | None) -> list[Line]:
    """The commands of the first ```bash block of the README at `path` after `after`, with their tags."""
    readme = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    blocks = fenced_blocks(path, "bash", after)
    assert blocks, f"{readme} has no ```bash block after {after!r}"
    first, text = blocks[0]
    commands, pending = [], ""
    for number, raw in enumerate(text.splitlines(), start=first):
        joined = pending + raw.strip()
        if joined.endswith("\\"):  # continued on the next line
            pending = joined[:-1] + " "
            continue
        pending = ""
        if not joined or joined.startswith("#"):
            continue
        code, _, comment = joined.partition(" #")
        argv = tuple(shlex.split(code))
        assert argv == tuple(shlex.split(joined, comments=True)), f"{readme}:{number}: a '#' inside an argument"
        tags = frozenset(re.findall(r"(?<!\w)\[([a-z]+)\]", comment))  # "[long]", not "msgf[deploy]"
        assert tags <= set(TAGS), f"{readme}:{number}: unknown tag(s) {sorted(tags - set(TAGS))}; known: {TAGS}"
        commands.append(Line(joined, argv, tags, f"{readme}:{number}"))
    return commands


def reduced(line: Line) -> list[str]:
    """The argv the test runs for `line`: its program from this environment, shortened by its tags."""
    program, *args = line.argv
    assert program in PROGRAMS, f"{line.where}: `{program}` is not a program this test knows ({sorted(PROGRAMS)})"
    if "processes" in line.tags:
        assert "--nproc-per-node" in args, f"{line.where}: [processes] without --nproc-per-node"
        args[args.index("--nproc-per-node") + 1] = "2"
    if "long" in line.tags:
        command = (program, args[0])
        assert command in LONG, f"{line.where}: [long] `{' '.join(command)}` has no reduction in LONG"
        args += LONG[command]
    if "gpu" in line.tags:
        args += ["--device", "cpu"]
    return [*PROGRAMS[program], *args]


def make_inputs(folder: Path) -> None:
    """What the examples name: photos/ (JPEG), scan.tif (tiled), train/val/test.jsonl (manifests of
    labelled scenes), sts/ (a recipe's folder of splits), photo.jpg, and val.npz / test.npz (the
    demo's trajectories)."""
    import tifffile
    from PIL import Image

    from msgf.data.manifest import read_manifest, write_manifest
    from msgf.data.synth_export import write_synthsigns
    from msgf.data.synthsigns import render_scene

    (folder / "photos").mkdir()
    for k in range(3):
        Image.fromarray(render_scene(k, "test", image_size=(96, 128)).image).save(folder / "photos" / f"{k}.jpg")
    Image.fromarray(render_scene(3, "test", image_size=(120, 160)).image).save(folder / "photo.jpg")
    tifffile.imwrite(folder / "scan.tif", render_scene(4, "test", image_size=(192, 256)).image, tile=(64, 64),
                     photometric="rgb")
    for split, count in (("train", 12), ("val", 8), ("test", 8)):  # scenes listed as JSONL, beside their CSV
        records, classes = read_manifest(write_synthsigns(folder, split, count, (64, 96), progress=False))
        write_manifest(folder / f"{split}.jsonl", records, classes)
        if split != "val":  # as datasets/sts writes it: train and test, the run holds out its own val
            write_synthsigns(folder / "sts", split, count, (64, 96), progress=False)
    for split in ("val", "test"):
        (folder / f"{split}.npz").write_bytes((folder / "runs" / "demo" / f"{split}_trajectories.npz").read_bytes())


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def run_in(folder: Path, argv: list[str], what: str, timeout: int = 600) -> list[str]:
    """Run `argv` in `folder`; fail naming `what` unless it exits 0. The files it wrote."""
    before, start = _files(folder), time.monotonic()
    done = subprocess.run(argv, cwd=folder, env=ENV, capture_output=True, text=True, timeout=timeout)
    seconds, after = time.monotonic() - start, _files(folder)
    written = sorted(name for name, stamp in after.items() if before.get(name) != stamp)
    print(f"$ {what}\n  exit {done.returncode} after {seconds:.1f} s; wrote {_summary(written)}")
    assert done.returncode == 0, (f"`{what}` exited {done.returncode}; its stderr ends:\n{done.stderr[-3000:]}\n"
                                  f"its stdout ends:\n{done.stdout[-800:]}")
    return written


def _summary(names: list[str]) -> str:
    """Written files, folders with more than three of them shown as a count."""
    by_folder: dict[str, list[str]] = {}
    for name in names:
        by_folder.setdefault(str(Path(name).parent), []).append(name)
    parts = [", ".join(files) if len(files) <= 3 else f"{folder}/ ({len(files)} files)"
             for folder, files in by_folder.items()]
    return "; ".join(parts) or "nothing"


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    """A folder where `make demo`'s own command lines have run on a tiny model, with the inputs."""
    folder = tmp_path_factory.mktemp("user")
    run_in(folder, ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "demo-steps", f"PY={sys.executable}",
                    f"DEMO_TRAIN={shlex.join(DEMO_TRAIN)}"], "make demo-steps (the tiny DEMO_TRAIN)")
    make_inputs(folder)
    return folder


def test_make_demo_stores_its_thresholds_and_ends_with_predictions_and_figures(user):
    import msgf

    demo = user / "runs" / "demo"
    (stored,) = msgf.load_checkpoint(demo / "model.ckpt").exit_thresholds
    report = json.loads((demo / "thresholds.json").read_text())
    (searched,) = report["results"]  # DEMO_BUDGET's: the README's lines must name the same budget
    assert stored.to_dict()["eta"] == searched["thresholds"] and stored.budget == searched["budget"]
    lines = (demo / "predictions.jsonl").read_text().splitlines()
    summary = json.loads(lines[-1])["summary"]
    assert summary["images"] == 6 and summary["failed"] == 0 and summary["accuracy"] is not None
    assert sorted(p.name for p in (demo / "figures").iterdir()) == [f"{k:06d}.png" for k in range(6)]


def test_the_readmes_run_in_order(user):
    ran = set()
    for readme, after in BASH_BLOCKS:
        lines = command_lines(REPO / readme, after)
        assert lines, f"{readme}: no commands found"
        for line in lines:
            if "slow" in line.tags:
                _parses(line)
                continue
            argv = reduced(line)
            if tuple(argv) not in ran:
                run_in(user, argv, f"{line.where}: {line.text}")
                ran.add(tuple(argv))
    examples = [(readme, first, code) for readme in _readmes() for first, code in fenced_blocks(readme, "python")]
    assert len(examples) >= 4, examples
    for number, (readme, first, code) in enumerate(examples):
        script = user / f"example_{number}.py"
        script.write_text(code + "\n")
        run_in(user, [sys.executable, "-c", PYTHON_RUNNER, script.name, json.dumps(TINY_PRESET)],
               f"{readme.relative_to(REPO)}:{first}: the Python example")


def _parses(line: Line) -> None:
    """A [slow] line's flags are those its command takes (argparse exits 2 otherwise)."""
    from msgf.cli import build_parser

    assert line.argv[0] == "msgf", f"{line.where}: only msgf lines can be [slow]"
    build_parser().parse_args(list(line.argv[1:]))


def _readmes() -> list[Path]:
    """Every README.md of the project, not of what is built or installed into it (.venv, build/)."""
    found = []
    for root, folders, files in os.walk(REPO):
        folders[:] = sorted(f for f in folders if not f.startswith(".") and f not in ("build", "dist", "runs"))
        found += [Path(root) / "README.md"] if "README.md" in files else []
    return found


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_slow_lines_run(tmp_path):
    """The [slow] lines, in full (`msgf reproduce --preset tiny`: minutes)."""
    slow = [line for readme, after in BASH_BLOCKS for line in command_lines(REPO / readme, after)
            if "slow" in line.tags]
    assert slow
    for line in slow:
        run_in(tmp_path, reduced(line), f"{line.where}: {line.text}", timeout=7200)


def test_the_parser_reads_tags_and_continuations_and_refuses_what_it_cannot_run(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n```bash\n# a comment line\nmsgf data synth --out a \\\n    --num 1000  # [long] text\n"
                      "torchrun --nproc-per-node 8 -m msgf infer m x  # [processes]\n```\n")
    first, second = command_lines(readme, None)
    assert first.argv == ("msgf", "data", "synth", "--out", "a", "--num", "1000") and first.tags == {"long"}
    assert first.where == "README.md:6"
    assert reduced(first)[-5:] == ["--num", "2", "--size", "96x128", "--no-progress"]
    assert reduced(second)[3:6] == ["--nproc-per-node", "2", "-m"]
    for text, message in (("msgf infer m x  # [fast]", r"unknown tag\(s\) \['fast'\]"),
                          ("msgf export m  # [long]", "has no reduction in LONG"),
                          ("make demo", "not a program")):
        readme.write_text(f"```bash\n{text}\n```\n")
        with pytest.raises(AssertionError, match=message):
            [reduced(line) for line in command_lines(readme, None)]
