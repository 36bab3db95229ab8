"""`msgf export` and `msgf infer --runtime onnx`: the same JSON lines as `msgf infer` on the checkpoint."""
import json

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from msgf.cli import main  # noqa: E402


def read_lines(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_infer_onnx_writes_the_lines_of_the_torch_runtime(lite, photos, scenes, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name, pixels in [*photos.items(), *((f"scene{k}", s) for k, s in enumerate(scenes))]:
        Image.fromarray(pixels).save(folder / f"{name}.png")
    Image.new("RGB", (40, 30)).save(folder / "tiny.png")  # smaller than a patch: skipped by both
    common = [str(folder), "--budget", "300M", "--batch", "4", "--no-progress", "--workers", "1", "--threads", "1"]
    assert main(["infer", str(lite["ckpt"]), *common, "--out", str(tmp_path / "torch.jsonl")]) == 1
    assert main(["infer", "--runtime", "onnx", str(lite["dir"]), *common, "--out", str(tmp_path / "onnx.jsonl")]) == 1
    (torch_lines, torch_summary), (onnx_lines, onnx_summary) = (read_lines(tmp_path / f"{r}.jsonl")
                                                                for r in ("torch", "onnx"))
    assert [line["file"] for line in onnx_lines] == [line["file"] for line in torch_lines]
    assert onnx_summary["failed_files"] == torch_summary["failed_files"] == [str(folder / "tiny.png")]
    agree = 0
    for a, b in zip(torch_lines, onnx_lines):
        assert a["image_size"] == b["image_size"]
        if (a["class"], a["exit_step"]) == (b["class"], b["exit_step"]):
            agree += 1
            assert abs(a["confidence"] - b["confidence"]) < 1e-4
            assert a["macs"] == b["macs"]
            assert [p["size"] for p in a["patches"]] == [p["size"] for p in b["patches"]]
            assert max([0] + [np.abs(np.subtract(p["box"], q["box"])).max()
                              for p, q in zip(a["patches"], b["patches"])]) <= 1
    assert agree >= len(torch_lines) - 1  # at most a sample on a threshold's edge (tests/deploy/test_predictor.py)


def test_usage_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "out")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(image)
    assert main(["infer", "--runtime", "onnx", str(tmp_path), str(image), "--no-progress"]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["infer", "--runtime", "onnx", str(tmp_path), str(image), "--device", "cuda"]) == 2
    assert "--device" in capsys.readouterr().err
