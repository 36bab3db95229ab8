"""Which data serves train, val and test (msgf.data.roles, msgf.data.layout): split folders,
the carved validation set, and the refusal of a file or image given for two roles."""
import hashlib
import os
import shutil

import numpy as np
import pytest

from msgf.data import open_dataset
from msgf.data.layout import fingerprint, split_files
from msgf.data.manifest import Record, write_manifest
from msgf.data.roles import DataRoles
from msgf.data.synth_export import write_synthsigns

SPLITS = {"train": 40, "val": 8, "test": 8}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """`msgf data synth` files, three splits: scenes/{train,val,test}.csv and their JPEGs."""
    folder = tmp_path_factory.mktemp("scenes")
    for split, num in SPLITS.items():
        write_synthsigns(folder, split, num, (64, 96), seed=1, progress=False)
    return folder


def _paths(dataset) -> set[str]:
    return {os.path.normpath(str(dataset.root / record.path)) for record in dataset.records}


def test_a_split_folder_serves_each_role_from_its_own_file(scenes):
    roles = DataRoles.resolve(scenes)
    assert {role: roles.source(role).name for role in ("train", "val", "test")} == \
        {role: str(scenes / f"{role}.csv") for role in ("train", "val", "test")}
    assert roles.carve() is None
    assert {role: roles.count(role) for role in SPLITS} == SPLITS
    lines = roles.lines({role: roles.count(role) for role in SPLITS})
    assert any(line.startswith("data: val ") and "val.csv" in line for line in lines)
    record = roles.record({role: roles.count(role) for role in SPLITS})
    assert record["test"]["sha256"] == hashlib.sha256((scenes / "test.csv").read_bytes()).hexdigest()
    assert record["test"]["images"] == 8 and record["val"]["carved_from_train"] is False


def test_without_validation_data_a_stratified_part_of_the_training_file_validates(scenes):
    roles = DataRoles.resolve(scenes / "train.csv", val_fraction=0.25, seed=3)
    train, val = roles.open("train"), roles.open("val")
    assert roles.source("val").carved and not roles.has("test")
    assert len(val) == 10 and len(train) == 30
    assert not _paths(train) & _paths(val)
    assert _paths(train) | _paths(val) == _paths(open_dataset(str(scenes / "train.csv")))
    everything = np.array(open_dataset(str(scenes / "train.csv")).targets)
    held = np.array(val.targets)
    assert np.all(np.abs(np.bincount(held, minlength=4) - 0.25 * np.bincount(everything, minlength=4)) < 1)
    # the same seed holds out the same images, another seed others
    again = DataRoles.resolve(scenes / "train.csv", val_fraction=0.25, seed=3).open("val")
    other = DataRoles.resolve(scenes / "train.csv", val_fraction=0.25, seed=4).open("val")
    assert _paths(again) == _paths(val) and _paths(other) != _paths(val)
    # a cap on the training images counts after the carve: never a validation image
    assert _paths(roles.open("train", num_samples=12)) <= _paths(train)
    text = "\n".join(roles.lines({"train": 30, "val": 10}))
    assert "held out of" in text and "stratified by class" in text and "no test set" in text
    assert "val.csv lies beside the training file" in text  # the unused split is pointed at


def test_explicit_files_and_a_split_folder_for_test(scenes):
    roles = DataRoles.resolve(scenes / "train.csv", val=scenes / "val.csv", test=scenes)
    assert roles.source("test").name == str(scenes / "test.csv")
    assert not roles.source("val").carved


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_the_same_file_for_two_roles_is_refused_naming_both(scenes, tmp_path, spelling):
    other = {"same": scenes / "val.csv", "dotted": scenes / "." / ".." / scenes.name / "val.csv",
             "symlink": tmp_path / "link.csv"}[spelling]
    if spelling == "symlink":
        os.symlink(scenes / "val.csv", other)
    with pytest.raises(ValueError, match=r"--val-data.*--test-data.*same file"):
        DataRoles.resolve(scenes / "train.csv", val=scenes / "val.csv", test=other)


def test_the_same_bytes_under_another_name_are_refused(scenes):
    copy = scenes / "val_copy.csv"
    shutil.copyfile(scenes / "train.csv", copy)
    try:
        with pytest.raises(ValueError, match=r"--data .*--test-data .*same data"):
            DataRoles.resolve(scenes / "train.csv", val=scenes / "val.csv", test=copy)
        with pytest.raises(ValueError, match=r"--data .*train.csv.*--val-data .*same data"):
            DataRoles.resolve(scenes / "train.csv", val=copy)
    finally:
        copy.unlink()


def test_manifests_that_share_images_are_refused(scenes, tmp_path):
    # another manifest listing two training images among its own: different bytes, same pictures
    val = open_dataset(str(scenes / "val.csv"))
    records = [Record(os.path.relpath(scenes / r.path, tmp_path), r.label, r.boxes) for r in val.records]
    train = open_dataset(str(scenes / "train.csv"))
    records += [Record(os.path.relpath(scenes / r.path, tmp_path), r.label, r.boxes) for r in train.records[:2]]
    write_manifest(tmp_path / "mixed.jsonl", records, val.classes)
    with pytest.raises(ValueError, match=r"--data .*--val-data .*share 2 image"):
        DataRoles.resolve(scenes / "train.csv", val=tmp_path / "mixed.jsonl")


def test_roles_that_disagree_on_the_classes_are_refused(scenes, tmp_path):
    train = open_dataset(str(scenes / "train.csv"))
    records = [Record(os.path.relpath(scenes / r.path, tmp_path), r.label, r.boxes) for r in train.records[:1]]
    write_manifest(tmp_path / "one.csv", records, [records[0].label])
    with pytest.raises(ValueError, match=r"--test-data .*classes"):
        DataRoles.resolve(scenes / "val.csv", test=tmp_path / "one.csv")


def test_missing_inputs_and_tiny_carves_are_named(scenes, tmp_path):
    with pytest.raises(FileNotFoundError, match="--val-data"):
        DataRoles.resolve(scenes / "train.csv", val=tmp_path / "nowhere.csv")
    with pytest.raises(TypeError, match="--data"):
        DataRoles.resolve(3)
    with pytest.raises(ValueError, match="val_fraction"):
        DataRoles.resolve(scenes / "train.csv", val_fraction=1.0)
    with pytest.raises(ValueError, match="val_fraction.*holds none out"):
        DataRoles.resolve(scenes / "val.csv", val_fraction=0.01).open("val")
    bare = tmp_path / "bare"
    shutil.copytree(scenes, bare, ignore=shutil.ignore_patterns("val*"))
    with pytest.raises(ValueError, match=r"split folder holding \['test', 'train'\], no 'val'"):
        DataRoles.resolve(scenes / "train.csv", val=bare)


def test_a_record_opens_the_same_images_and_notices_changed_files(scenes, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(scenes, folder)
    roles = DataRoles.resolve(folder / "train.csv", test=folder / "test.csv", val_fraction=0.2, seed=2)
    record = roles.record({"train": 32, "val": 8, "test": 8})
    again = DataRoles.from_record(record)
    for role in ("train", "val", "test"):
        assert _paths(again.open(role)) == _paths(roles.open(role))
    assert again.roles_of(folder / "train.csv") == ["train"]
    assert again.roles_of(folder) == [] and again.roles_of(folder, "test") == ["test"]
    with open(folder / "train.csv", "a") as handle:
        handle.write("train/000000.jpg,EMPTY,\n")  # now a different file (and a bad one)
    with pytest.raises(ValueError, match="changed since training"):
        DataRoles.from_record(record)


def test_split_folders_of_manifests_and_of_image_folders(scenes, tmp_path, write_image):
    assert set(split_files(scenes, {"train": "train", "val": "val", "test": "test"})) == {"train", "val", "test"}
    assert split_files(scenes, {"train": "train", "val": None, "test": "val"}) == \
        {"train": scenes / "train.csv", "test": scenes / "val.csv"}
    image = np.full((8, 8, 3), 90, np.uint8)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            write_image(tmp_path / "trees" / split / name / "a.png", image)
    assert split_files(tmp_path / "trees", {"train": "train", "val": "val", "test": "test"}) == \
        {"train": tmp_path / "trees" / "train", "val": tmp_path / "trees" / "val"}
    assert open_dataset(str(tmp_path / "trees"), "val").classes == ["cat", "dog"]
    # an ImageFolder is not a split folder, even beside one
    assert split_files(tmp_path / "trees" / "train", {"train": "train"}) is None
    (scenes / "train.jsonl").write_text("")
    try:
        with pytest.raises(ValueError, match="both train.csv and train.jsonl"):
            split_files(scenes, {"train": "train"})
    finally:
        (scenes / "train.jsonl").unlink()


def test_open_dataset_reads_one_split_of_a_split_folder(scenes):
    assert len(open_dataset(str(scenes), "test")) == 8
    assert len(open_dataset(str(scenes), "train")) == 40
    with pytest.raises(ValueError, match="no 'holdout'"):
        open_dataset(str(scenes), "holdout")


def test_fingerprints_are_equal_for_equal_content(scenes, tmp_path):
    shutil.copyfile(scenes / "val.csv", tmp_path / "renamed.csv")
    assert fingerprint(tmp_path / "renamed.csv") == fingerprint(scenes / "val.csv") != fingerprint(scenes / "test.csv")
    shutil.copytree(scenes / "val", tmp_path / "tree" / "x")
    shutil.copytree(scenes / "val", tmp_path / "other" / "x")
    assert fingerprint(tmp_path / "tree") == fingerprint(tmp_path / "other")
    (tmp_path / "other" / "x" / "000000.jpg").write_bytes(b"different")
    assert fingerprint(tmp_path / "tree") != fingerprint(tmp_path / "other")
