"""`msgf infer` over corrupt and hostile files (issue 16, item 3): every good file gets its line,
every bad one is skipped and reported by name (stderr and the summary's failed_files), and the
exit status is 1 when any input failed (2 is for usage errors: the checkpoint, the thresholds, a
malformed manifest). The hostile files are built by tests/conftest.py (build_hostile_files);
tests/data/test_hostile_files.py checks each one's error at the readers themselves."""
import json
import shutil

import pytest

from msgf.cli import main

pytestmark = [pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]


def _run(ckpt, paths, out, *extra):
    return main(["infer", str(ckpt), *map(str, paths), "--budget", "200M", "--out", str(out), "--no-progress", *extra])


def _read(out):
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_a_folder_of_good_and_hostile_files(ckpt, photo_files, small_tiff, build_hostile, tmp_path, capsys):
    root = tmp_path / "mixed"
    (root / "sub").mkdir(parents=True)
    good = [shutil.copy(path, root / path.name) for path in photo_files.values()]
    good.append(shutil.copy(small_tiff[0], root / "sub" / small_tiff[0].name))
    hostile = build_hostile(root / "hostile")
    (root / "hostile" / "loop_dir").symlink_to(".")  # a directory symlink loop: not followed
    # everything named like an image is an input, directories apart (a_directory.jpg is searched, and empty)
    bad = sorted(str(path) for path in hostile.values() if not path.is_dir())
    out = tmp_path / "preds.jsonl"
    assert _run(ckpt, [root], out, "--batch", "4") == 1
    err = capsys.readouterr().err
    lines, summary = _read(out)
    assert sorted(line["file"] for line in lines) == sorted(map(str, good))
    assert sorted(summary["failed_files"]) == bad
    assert summary["images"] == len(good) and summary["failed"] == len(bad) == 21
    assert summary["inputs"] == len(good) + len(bad)
    for path in bad:
        assert f"msgf infer: skipped {path}: " in err
    for text in ("is a symlink loop", "is a dangling symlink", "is not a regular file", "lie past the end of the file",
                 "more than msgf.data.regions.MAX_TIFF_PIXELS", "more than msgf.data.decode.MAX_IMAGE_PIXELS",
                 "claims 65000 x 65000 pixels in its own header", "in 16,777,216 tiles or strips"):
        assert text in err, text
    assert "Traceback" not in err and "allocate" not in err.lower()


def test_each_hostile_file_given_alone_is_reported_and_the_run_ends(ckpt, hostile_files, tmp_path, capsys):
    files = [path for path in hostile_files.values() if not path.is_dir()]
    out = tmp_path / "preds.jsonl"
    assert _run(ckpt, files, out) == 1
    lines, summary = _read(out)
    assert lines == [] and summary["images"] == 0 and sorted(summary["failed_files"]) == sorted(map(str, files))
    err = capsys.readouterr().err
    assert all(f"skipped {path}: " in err for path in files)


def test_a_manifest_with_missing_and_hostile_rows(ckpt, photo_files, hostile_files, tmp_path, capsys):
    shutil.copy(photo_files["cat"], tmp_path / "cat.jpg")
    rows = [("cat.jpg", "cat"), ("missing.png", "cat"), (str(hostile_files["a_directory.jpg"]), "cat"),
            (str(hostile_files["symlink_loop.jpg"]), "rocket"), (str(hostile_files["truncated.png"]), "coffee")]
    manifest = tmp_path / "test.csv"
    manifest.write_text("path,label\n" + "".join(f"{path},{label}\n" for path, label in rows))
    out = tmp_path / "preds.jsonl"
    assert _run(ckpt, [manifest], out) == 1
    lines, summary = _read(out)
    assert [line["file"] for line in lines] == [str(tmp_path / "cat.jpg")] and lines[0]["label"] == "cat"
    assert summary["failed_files"] == [str(tmp_path / "missing.png")] + [p for p, _ in rows[2:]]
    err = capsys.readouterr().err
    assert "missing.png' does not exist" in err and "is a directory, not a file" in err and "symlink loop" in err


@pytest.mark.parametrize("text, fragment", [
    ("path,label\ncat.jpg,cat\n./cat.jpg,cat\n", "test.csv:3: path './cat.jpg' is listed twice"),
    ("path,label\ncat.jpg,\n", "test.csv:2: label is empty"),
    ("path,label\ncat.jpg\n", "test.csv:2: no label"),
])
def test_a_malformed_manifest_is_a_usage_error_naming_its_line(ckpt, tmp_path, capsys, text, fragment):
    manifest = tmp_path / "test.csv"
    manifest.write_text(text)
    assert _run(ckpt, [manifest], tmp_path / "preds.jsonl") == 2
    assert fragment in capsys.readouterr().err
