"""The presets that name real data read their recipe's files (issue 30): `sts` trains on
train.csv and tests on test.csv, `imagenet-384/480` train on train.csv and test on val.csv, and
both validate on images held out of train.csv. The fixtures are tiny raw datasets run through
the recipes themselves, so the file names checked are the ones the recipes write."""
import os

import numpy as np
import pytest

from msgf.data import read_manifest
from msgf.train.data import Splits
from msgf.train.presets import preset


def _images(manifest) -> set[str]:
    return {os.path.normpath(str(manifest.parent / r.path)) for r in read_manifest(manifest)[0]}


def _paths(dataset) -> set[str]:
    return {os.path.normpath(str(dataset.root / r.path)) for r in dataset.records}


def _roles(name: str, folder):
    config = preset(name, **{"data.source": str(folder)})
    splits = Splits(config.data, config.seed)
    return splits, {role: splits.roles.source(role) for role in ("train", "val", "test")}


@pytest.fixture
def sts(tmp_path, write_image, run_script):
    """prepare_sts.py's output for 20 annotated Set1 images (12 EMPTY, 3 of 50, 3 of 70, 2 of
    80) and 4 Set2 images."""
    root = tmp_path / "sts"
    sign = {"50": "50_SIGN", "70": "70_SIGN", "80": "80_SIGN"}
    set1 = [f"e{i}.jpg:" for i in range(12)] + [
        f"s{label}_{i}.jpg:VISIBLE, 60, 70, 40, 45, PROHIBITORY, {sign[label]};"
        for label, count in (("50", 3), ("70", 3), ("80", 2)) for i in range(count)]
    set2 = ["t0.jpg:", "t1.jpg:", "t2.jpg:VISIBLE, 60, 70, 40, 45, PROHIBITORY, 50_SIGN;", "t3.jpg:"]
    for set_name, lines in (("Set1", set1), ("Set2", set2)):
        for line in lines:
            write_image(root / set_name / f"{set_name}Part0" / line.split(":")[0], np.full((48, 64, 3), 90, np.uint8))
        (root / set_name / "annotations.txt").write_text("\n".join(lines) + "\n")
    run_script("datasets/prepare_sts.py", "--root", str(root))
    return root


def test_sts_preset_trains_on_train_csv_tests_on_test_csv_and_holds_out_validation(sts):
    assert sorted(p.name for p in sts.glob("*.csv")) == ["test.csv", "train.csv"]  # what the recipe writes
    splits, roles = _roles("sts", sts)
    assert roles["train"].name == str(sts / "train.csv") and roles["test"].name == str(sts / "test.csv")
    assert roles["val"].carved and roles["val"].name == roles["train"].name
    val, test, train = splits.evaluation("val"), splits.evaluation("test"), splits.train(1, 0)
    assert _paths(test) == _images(sts / "test.csv")
    assert len(val) == 2 and _paths(val) <= _images(sts / "train.csv")  # 10% of 20
    assert not _paths(val) & _paths(train) and _paths(val) | _paths(train) == _images(sts / "train.csv")
    assert sorted(val.classes[k] for k in val.targets) == ["50_SIGN", "EMPTY"]  # 1.2 and 0.3: stratified
    assert splits.record()["val"]["val_fraction"] == 0.1


def test_imagenet_presets_train_on_train_csv_and_test_on_val_csv(tmp_path, write_image, run_script):
    src = tmp_path / "imagenet"
    for split, counts in (("train", (13, 12)), ("val", (2, 2))):
        for wnid, count in zip(("n01", "n02"), counts):
            for i in range(count):
                write_image(src / split / wnid / f"{wnid}_{i}.JPEG", np.full((24, 32, 3), 40 * i % 255, np.uint8))
    out = tmp_path / "hr"
    run_script("datasets/prepare_imagenet_hr.py", "--src", str(src), "--size", "384", "--out", str(out),
               "--workers", "1", "--no-progress")
    assert sorted(p.name for p in out.glob("*.csv")) == ["train.csv", "val.csv"]
    for name in ("imagenet-384", "imagenet-480"):
        splits, roles = _roles(name, out)
        assert roles["train"].name == str(out / "train.csv") and roles["test"].name == str(out / "val.csv")
        assert roles["val"].carved
        assert _paths(splits.evaluation("test")) == _images(out / "val.csv")
        val = splits.evaluation("val")
        assert len(val) == 1 and not _paths(val) & _paths(splits.train(1, 0))  # 4% of 25
