"""`msgf infer --resume`: a run killed at any point, then resumed, ends with exactly one line per
readable input, identical to an uninterrupted run's (the summary aside, whose timing differs)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from msgf.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def many_images(photo_files, tmp_path_factory):
    """60 images (the photos, copied) and one corrupt file among them."""
    root = tmp_path_factory.mktemp("many")
    photos = list(photo_files.values())
    for k in range(60):
        source = photos[k % len(photos)]
        shutil.copy(source, root / f"{k:03d}{source.suffix}")
    data = photos[0].read_bytes()
    (root / "030-broken.jpg").write_bytes(data[:len(data) // 3])
    return root


def _command(ckpt, folder, out, *extra):
    return [sys.executable, "-m", "msgf", "infer", str(ckpt), str(folder), "--budget", "200M", "--batch", "4",
            "--out", str(out), "--no-progress", *extra]


def _lines(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith('{"summary"')]


@pytest.fixture(scope="module")
def reference(ckpt, many_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "preds.jsonl"
    done = subprocess.run(_command(ckpt, many_images, out), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the corrupt file is skipped and named
    assert len(_lines(out)) == 60
    return out


def test_killed_then_resumed_equals_an_uninterrupted_run(ckpt, many_images, reference, tmp_path):
    out = tmp_path / "preds.jsonl"
    for kill_after_lines in (8, 31):  # the second kill lands after the corrupt file
        proc = subprocess.Popen(_command(ckpt, many_images, out, "--resume"), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if out.exists() and out.read_text().count("\n") >= kill_after_lines:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        assert len(_lines(out)) < 60
    resumed = subprocess.run(_command(ckpt, many_images, out, "--resume"), env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 1 and "resuming:" in resumed.stderr and "030-broken.jpg" in resumed.stderr
    assert _lines(out) == _lines(reference)  # byte for byte, in input order
    summary = json.loads(out.read_text().splitlines()[-1])["summary"]
    assert summary["images"] == 60 and summary["failed_files"] == [str(many_images / "030-broken.jpg")]


def test_a_torn_last_line_and_an_old_summary_are_dropped(ckpt, many_images, reference, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    lines = _lines(reference)
    # a run killed while writing line 23 (of a batch it had not finished), its summary never written
    out.write_text("".join(line + "\n" for line in lines[:22]) + lines[22][:40])
    assert main(_command(ckpt, many_images, out, "--resume")[3:]) == 1
    assert _lines(out) == lines
    # resuming a finished run computes nothing and keeps one summary
    before = _lines(out)
    assert main(_command(ckpt, many_images, out, "--resume")[3:]) == 1
    assert _lines(out) == before and out.read_text().count('{"summary"') == 1
    assert "resuming: 60 of 61 inputs" in capsys.readouterr().err


def test_resume_needs_an_output_file_of_msgf_infer(ckpt, many_images, tmp_path, capsys):
    assert main(["infer", str(ckpt), str(many_images), "--budget", "200M", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text("this is not json\n")
    assert main(["infer", str(ckpt), str(many_images), "--budget", "200M", "--resume", "--out", str(foreign)]) == 2
    assert "notes.jsonl:1 is not a JSON line" in capsys.readouterr().err
    assert foreign.read_text() == "this is not json\n"


def _torchrun(ckpt, folder, out, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "msgf",
            *_command(ckpt, folder, out, *extra)[3:]]


def test_two_gloo_processes_write_what_one_process_writes(ckpt, many_images, reference, tmp_path):
    out = tmp_path / "preds.jsonl"
    done = subprocess.run(_torchrun(ckpt, many_images, out), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]  # the corrupt file, named once
    assert _lines(out) == _lines(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"]  # the part files are merged and gone
    summary = json.loads(out.read_text().splitlines()[-1])["summary"]
    assert summary["images"] == 60 and summary["failed_files"] == [str(many_images / "030-broken.jpg")]


def test_killed_under_torchrun_then_resumed_equals_one_uninterrupted_process(ckpt, many_images, reference, tmp_path):
    out = tmp_path / "preds.jsonl"
    proc = subprocess.Popen(_torchrun(ckpt, many_images, out, "--resume"), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        parts = list(tmp_path.glob("preds.jsonl.part*"))
        if sum(p.read_text().count("\n") for p in parts) >= 12:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers at once
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists() or len(_lines(out)) < 60
    resumed = subprocess.run(_torchrun(ckpt, many_images, out, "--resume"), env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    assert "resuming:" in resumed.stderr
    assert _lines(out) == _lines(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"]


def test_a_fresh_torchrun_run_ignores_an_earlier_output_and_its_parts(ckpt, many_images, reference, tmp_path):
    out = tmp_path / "preds.jsonl"
    stale = json.loads(_lines(reference)[0])
    stale["class"] = "stale"
    out.write_text(json.dumps(stale) + "\n")
    (tmp_path / "preds.jsonl.part2-of-3").write_text(json.dumps(stale) + "\n")  # another world size's part
    done = subprocess.run(_torchrun(ckpt, many_images, out), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert _lines(out) == _lines(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"]
