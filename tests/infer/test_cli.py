import json
import shutil

import pytest
from PIL import Image

import msgf
from msgf.cli import main
from msgf.data.regions import open_image


def read_lines(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[:-1], lines[-1]["summary"]


@pytest.fixture
def folder(tmp_path, photo_files, small_tiff):
    """Photos (JPEG/PNG), a tiled pyramidal TIFF, a corrupt JPEG (fails to open) and an image
    smaller than a patch (opens, then fails inside its batch)."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for path in photo_files.values():
        shutil.copy(path, root / path.name)
    shutil.copy(small_tiff[0], root / "sub" / small_tiff[0].name)
    data = (root / "astronaut.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[:len(data) // 3])  # truncated mid-scan
    Image.new("RGB", (40, 30)).save(root / "tiny.png")
    (root / "notes.txt").write_text("not an image, and not picked up from a directory")
    return root


def test_infer_a_folder_with_a_corrupt_file_and_a_tiff(folder, ckpt, tmp_path, capsys):
    out, figures = tmp_path / "preds.jsonl", tmp_path / "figures"
    status = main(["infer", str(ckpt), str(folder), "--budget", "200M", "--batch", "3", "--out", str(out),
                   "--visualize", str(figures), "--no-progress"])
    assert status == 1  # two files failed; the run still went through the others
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "tiny.png" in err and "smaller than the model's largest patch" in err
    lines, summary = read_lines(out)
    bad = [str(folder / "broken.jpg"), str(folder / "tiny.png")]
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix in (".jpg", ".png", ".tif") and str(p) not in bad)
    assert sorted(line["file"] for line in lines) == files
    assert summary["images"] == 6 and summary["failed"] == 2 and summary["inputs"] == 8
    assert summary["failed_files"] == bad
    assert summary["avg_macs"] == pytest.approx(sum(line["macs"] for line in lines) / 6)
    assert summary["images_per_second"] > 0
    # every line is what the Python API gives for that file (oracle: tests/infer/test_predictor.py)
    predictor = msgf.Predictor(ckpt, budget=2e8)
    for line in lines:
        (expected,) = predictor.predict_regions([open_image(line["file"])])
        # batched with other sizes, matrix products may round differently in the last bit
        assert line["class"] == expected.class_name
        assert line["confidence"] == pytest.approx(expected.confidence, rel=1e-5)
        assert line["exit_step"] == expected.exit_step and line["macs"] == expected.macs
        assert [p["box"] for p in line["patches"]] == [list(s.box) for s in expected.patches]
        assert [p["size"] for p in line["patches"]] == [s.size for s in expected.patches]
        assert len(line["patches"]) == line["exit_step"] - 1 and len(line["steps"]) == line["exit_step"]
        height, width = line["image_size"]
        for patch in line["patches"]:
            x0, y0, x1, y1 = patch["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and x1 - x0 == patch["size"]
    tiff_line = next(line for line in lines if line["file"].endswith(".tif"))
    assert tiff_line["image_size"] == [600, 800]
    pngs = sorted(p.name for p in figures.iterdir())
    assert pngs == sorted(f"{p.rsplit('/', 1)[1].rsplit('.', 1)[0]}.png" for p in files)
    for png in figures.iterdir():
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_manifest_labels_give_accuracy_and_stdout_by_default(photo_files, ckpt, tmp_path, capsys):
    rows = [("astronaut", "astronaut"), ("coffee", "coffee"), ("cat", "cat"), ("rocket", "astronaut")]
    manifest = tmp_path / "test.csv"
    for name, _ in rows:
        shutil.copy(photo_files[name], tmp_path / photo_files[name].name)
    manifest.write_text("path,label\n" + "".join(f"{photo_files[n].name},{label}\n" for n, label in rows))
    status = main(["infer", str(ckpt), str(manifest), "--no-progress", "--visualize", str(tmp_path / "v")])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = lines.pop()["summary"]
    assert [line["label"] for line in lines] == [label for _, label in rows]
    for line in lines:
        assert line["correct"] == (line["class"] == line["label"])
    assert summary["accuracy"] == pytest.approx(sum(line["correct"] for line in lines) / 4)
    assert summary["failed"] == 0 and len(list((tmp_path / "v").iterdir())) == 4


def test_missing_file_fails_by_name_and_usage_errors_exit_2(photo_files, ckpt, tmp_path, capsys):
    missing = tmp_path / "nowhere.png"
    status = main(["infer", str(ckpt), str(photo_files["cat"]), str(missing), "--no-progress"])
    captured = capsys.readouterr()
    assert status == 1 and "nowhere.png" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["summary"]["images"] == 1
    assert main(["infer", str(ckpt), str(photo_files["cat"]), "--budget", "1G", "--no-progress"]) == 2
    assert "no thresholds for budget" in capsys.readouterr().err
    not_a_checkpoint = tmp_path / "fake.pt"
    not_a_checkpoint.write_bytes(b"nope")
    assert main(["infer", str(not_a_checkpoint), str(photo_files["cat"])]) == 2
    assert "fake.pt" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["infer", str(ckpt), str(empty)]) == 2
    assert "no images found" in capsys.readouterr().err


def test_thresholds_from_the_report_of_search_thresholds(photo_files, ckpt, search_report, tmp_path, capsys):
    """--thresholds takes what `msgf search-thresholds --out` writes; --budget picks one of its budgets,
    which gives the lines of that set written alone (the one-set file that worked before)."""
    from threshold_search import format_macs

    path, budgets = search_report
    row = json.loads(path.read_text())["results"][1]
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps({"eta": row["thresholds"]}))
    images = [str(p) for p in photo_files.values()]
    lines = {}
    for name, flags in (("report", ["--thresholds", str(path), "--budget", str(budgets[1])]),
                        ("alone", ["--thresholds", str(alone)])):
        assert main(["infer", str(ckpt), *images, *flags, "--out", str(tmp_path / f"{name}.jsonl"),
                     "--no-progress"]) == 0
        lines[name] = read_lines(tmp_path / f"{name}.jsonl")[0]
    assert lines["report"] == lines["alone"] and len(lines["report"]) == len(images)
    assert main(["infer", str(ckpt), *images, "--thresholds", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds 2 threshold sets" in err and all(format_macs(b) in err for b in budgets)
