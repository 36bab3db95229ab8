import json

import numpy as np
import pytest
import torch

import msgf
import msgf.checkpoint
import msgf.data
from msgf.cli import main
from msgf.engine import Thresholds, anytime

DATA = ["--data", "synthsigns", "--split", "val", "--num-samples", "6", "--image-size", "96x128",
        "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    classes = msgf.data.open_dataset("synthsigns", "val", num_samples=1, image_size=(96, 128)).classes
    model = msgf.build_model("mobilenet_v3_small", num_classes=len(classes), glance_size=32, patch_sizes=[32, 48],
                             T=3).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    msgf.save_checkpoint(model, path)
    return path


def images_and_labels():
    dataset = msgf.data.open_dataset("synthsigns", "val", num_samples=6, image_size=(96, 128))
    batch = msgf.data.collate_batch([dataset[i] for i in range(6)])
    return batch["images"], batch["labels"]


def test_thresholds_file_never_exiting_early_equals_anytime_at_the_last_step(checkpoint, tmp_path, capsys):
    # eta = (inf, 0): never exit before T, always continue with size 32.
    file = tmp_path / "eta.json"
    file.write_text(Thresholds([[np.inf, 0.0], [np.inf, 0.0]]).to_json())
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(checkpoint), *DATA, "--thresholds", str(file), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    model = msgf.load_checkpoint(checkpoint)
    images, labels = images_and_labels()
    reference = anytime(model, images, 32)
    assert report["num_samples"] == 6
    assert report["accuracy"] == pytest.approx(float((reference.pred[:, -1] == labels).double().mean()))
    assert report["avg_macs"] == model.path_macs([32, 32])
    assert report["exit_fraction"] == [0.0, 0.0, 1.0] and report["focus_size_fraction"] == {"32": 1.0, "48": 0.0}
    assert "accuracy" in capsys.readouterr().out


def test_budget_uses_the_thresholds_stored_in_the_checkpoint(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(checkpoint), *DATA, "--budget", "2M", "--out", str(out)]) == 2
    assert "search-thresholds" in capsys.readouterr().err
    copy = tmp_path / "model.pt"
    copy.write_bytes(checkpoint.read_bytes())
    msgf.checkpoint.update_thresholds(copy, Thresholds([[-np.inf, -np.inf], [0.0, 0.0]], budget=2e6))
    assert main(["evaluate", str(copy), *DATA, "--budget", "2M", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "budget" and report["thresholds"]["budget"] == 2e6
    assert report["exit_fraction"] == [1.0, 0.0, 0.0]  # -inf thresholds: everyone exits at the glance
    assert report["avg_macs"] == msgf.load_checkpoint(copy).step_macs(1)


def test_anytime_reports_a_curve_per_size(checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(checkpoint), *DATA, "--anytime", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    model = msgf.load_checkpoint(checkpoint)
    images, labels = images_and_labels()
    for size in (32, 48):
        curve = report["anytime"][str(size)]
        reference = anytime(model, images, size)
        assert curve["macs"] == reference.macs.tolist()
        assert curve["accuracy"] == pytest.approx((reference.pred == labels[:, None]).double().mean(0).tolist())


def test_bad_arguments(checkpoint, tmp_path, capsys):
    for mode in ([], ["--anytime", "--budget", "2M"]):  # thresholds (by budget and/or file), or --anytime
        assert main(["evaluate", str(checkpoint), *DATA, *mode]) == 2
        assert "give --budget and/or --thresholds (early exits), or --anytime" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(checkpoint), *DATA, "--budget", "lots"])
    file = tmp_path / "eta.json"
    file.write_text(Thresholds([[0.5]]).to_json())
    assert main(["evaluate", str(checkpoint), *DATA, "--thresholds", str(file)]) == 2
    assert "model needs" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.pt"), *DATA, "--anytime"]) == 2


def test_thresholds_from_the_report_of_search_thresholds(checkpoint, search_report, tmp_path, capsys):
    """--thresholds takes what `msgf search-thresholds --out` writes; --budget picks one of its budgets."""
    path, budgets = search_report
    out = tmp_path / "eval.json"
    for budget, row in zip(budgets, json.loads(path.read_text())["results"]):
        argv = ["evaluate", str(checkpoint), *DATA, "--thresholds", str(path), "--budget", str(budget)]
        assert main([*argv, "--out", str(out)]) == 0
        report = json.loads(out.read_text())
        assert report["mode"] == "thresholds" and report["thresholds"]["budget"] == budget
        assert report["thresholds"]["eta"] == row["thresholds"]
    assert main(["evaluate", str(checkpoint), *DATA, "--thresholds", str(path)]) == 2
    assert "holds 2 threshold sets" in capsys.readouterr().err
