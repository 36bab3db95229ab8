import json

import numpy as np
import pytest
import torch
from PIL import Image

from msgf.data import CorruptImageError, collate_batch, open_dataset


def _pixels(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def photo_tree(tmp_path, write_image):
    for k, (name, h, w) in enumerate([("cat", 20, 30), ("cat", 24, 30), ("dog", 20, 30)]):
        write_image(tmp_path / "tree" / name / f"{k}.png", _pixels(k, h, w))
    return tmp_path / "tree"


def test_image_folder_decodes_once_as_uint8_with_sorted_classes(photo_tree):
    ds = open_dataset(str(photo_tree))
    assert ds.classes == ["cat", "dog"] and len(ds) == 3
    item = ds[2]
    assert item["label"] == 1 and item["image"].dtype == torch.uint8
    expected = np.asarray(Image.open(photo_tree / "dog" / "2.png"))  # oracle: Pillow's own decode
    assert np.array_equal(item["image"].numpy(), expected)
    assert item["boxes"].shape == (0, 4) and item["path"].endswith("2.png")


def test_csv_and_jsonl_manifests_agree_and_keep_boxes(tmp_path, write_image):
    write_image(tmp_path / "img" / "a.png", _pixels(1, 40, 50))
    write_image(tmp_path / "img" / "b.png", _pixels(2, 40, 50))
    (tmp_path / "m.csv").write_text("path,label,boxes\nimg/a.png,70,1 2 11 12;3 4 5 6\nimg/b.png,EMPTY,\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "img/a.png", "label": "70", "boxes": [[1, 2, 11, 12], [3, 4, 5, 6]]})
                                      + "\n\n" + json.dumps({"path": "img/b.png", "label": "EMPTY"}) + "\n")
    (tmp_path / "classes.txt").write_text("EMPTY\n50\n70\n80\n")
    for name in ("m.csv", "m.jsonl"):
        ds = open_dataset(str(tmp_path / name))
        assert ds.classes == ["EMPTY", "50", "70", "80"]
        a, b = ds[0], ds[1]
        assert a["label"] == 2 and b["label"] == 0
        assert torch.equal(a["boxes"], torch.tensor([[1, 2, 11, 12], [3, 4, 5, 6]], dtype=torch.float32))
        assert b["boxes"].shape == (0, 4)
        assert np.array_equal(a["image"].numpy(), _pixels(1, 40, 50))


def test_without_classes_file_classes_are_sorted_labels(tmp_path, write_image):
    write_image(tmp_path / "a.png", _pixels(1, 8, 8))
    write_image(tmp_path / "b.png", _pixels(2, 8, 8))  # one file per row: a path listed twice is an error
    (tmp_path / "m.csv").write_text("path,label\na.png,zebra\nb.png,ant\n")
    ds = open_dataset(str(tmp_path / "m.csv"))
    assert ds.classes == ["ant", "zebra"] and ds[0]["label"] == 1


def test_manifest_label_missing_from_classes_file_is_an_error(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,90\n")
    (tmp_path / "classes.txt").write_text("EMPTY\n50\n")
    with pytest.raises(ValueError, match="90"):
        open_dataset(str(tmp_path / "m.csv"))


def test_manifest_without_label_column_is_an_error(tmp_path):
    (tmp_path / "m.csv").write_text("path,class\na.png,x\n")
    with pytest.raises(ValueError, match="label"):
        open_dataset(str(tmp_path / "m.csv"))


def test_image_size_resizes_images_and_boxes(tmp_path, write_image):
    write_image(tmp_path / "a.png", _pixels(1, 40, 60))
    (tmp_path / "m.csv").write_text("path,label,boxes\na.png,x,6 4 30 20\n")
    item = open_dataset(str(tmp_path / "m.csv"), image_size=(20, 30))[0]
    assert item["image"].shape == (20, 30, 3) and item["image"].dtype == torch.uint8
    assert torch.allclose(item["boxes"], torch.tensor([[3.0, 2.0, 15.0, 10.0]]))


def test_num_samples_keeps_the_first_images(photo_tree):
    assert len(open_dataset(str(photo_tree), num_samples=2)) == 2


def test_corrupt_file_raises_naming_it(tmp_path, write_image):
    good = write_image(tmp_path / "good.jpg", _pixels(1, 64, 64), quality=90)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all")
    (tmp_path / "m.csv").write_text("path,label\ngood.jpg,a\ntruncated.jpg,b\ngarbage.jpg,b\n")
    ds = open_dataset(str(tmp_path / "m.csv"))
    with pytest.raises(CorruptImageError, match="truncated.jpg"):
        ds[1]
    with pytest.raises(CorruptImageError, match="garbage.jpg"):
        ds[2]


def test_skip_corrupt_skips_and_counts_in_a_warning(tmp_path, write_image):
    write_image(tmp_path / "a.png", _pixels(1, 16, 16))
    write_image(tmp_path / "b.png", _pixels(2, 16, 16))
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG broken")
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) - 40])  # header fine, pixel data cut
    (tmp_path / "m.csv").write_text("path,label\na.png,x\ngarbage.png,y\ncut.png,y\nb.png,z\n")
    with pytest.warns(UserWarning, match=r"skipped 1 of 4"):
        ds = open_dataset(str(tmp_path / "m.csv"), skip_corrupt=True)
    assert len(ds) == 3
    with pytest.warns(UserWarning, match=r"1 corrupt file\(s\) skipped"):
        item = ds[1]  # cut.png fails to decode: the next readable sample, with its own label
    assert ds.classes[item["label"]] == "z" and np.array_equal(item["image"].numpy(), _pixels(2, 16, 16))


def test_collate_stacks_uint8_and_keeps_boxes_and_paths(photo_tree):
    ds = open_dataset(str(photo_tree))
    batch = collate_batch([ds[0], ds[2]])
    assert batch["images"].shape == (2, 20, 30, 3) and batch["images"].dtype == torch.uint8
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [0, 1]
    assert [b.shape for b in batch["boxes"]] == [(0, 4), (0, 4)] and len(batch["paths"]) == 2


def test_collate_rejects_mixed_sizes_clearly(photo_tree):
    ds = open_dataset(str(photo_tree))
    with pytest.raises(ValueError, match="differ in size"):
        collate_batch([ds[0], ds[1]])


def test_bad_source_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match="source"):
        open_dataset(str(tmp_path / "nowhere.txt"))
    with pytest.raises(TypeError, match="source"):
        open_dataset(42)


def test_photo_augment_applies_to_image_folders(photo_tree):
    torch.manual_seed(0)
    ds = open_dataset(str(photo_tree), augment=True, image_size=(16, 16))
    shapes = {tuple(ds[i]["image"].shape) for i in range(3)}
    assert shapes == {(16, 16, 3)}
