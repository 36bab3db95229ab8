import numpy as np
import pytest
import torch

from msgf.data import open_dataset
from msgf.data.synthsigns import CLASSES, SIGN_FRACTION, render_scene

SIZE = (120, 160)


def test_same_index_split_seed_gives_same_scene_and_others_differ():
    a, b = render_scene(7, "val", 3, SIZE), render_scene(7, "val", 3, SIZE)
    assert np.array_equal(a.image, b.image) and a.label == b.label
    assert a.box is None and b.box is None or np.array_equal(a.box, b.box)
    for other in (render_scene(8, "val", 3, SIZE), render_scene(7, "test", 3, SIZE), render_scene(7, "val", 4, SIZE)):
        assert not np.array_equal(a.image, other.image)


def test_scene_shape_dtype_and_size_is_configurable():
    scene = render_scene(0, "train", 0, (96, 200))
    assert scene.image.shape == (96, 200, 3) and scene.image.dtype == np.uint8


def test_labels_about_half_empty_and_all_classes_present():
    labels = np.array([render_scene(i, "train", 1, (64, 64)).label for i in range(240)])
    assert 0.4 < (labels == 0).mean() < 0.6
    assert set(labels.tolist()) == {0, 1, 2, 3}


def test_target_box_is_a_red_ringed_sign_of_the_specified_size():
    height = 480
    for index in range(40):
        scene = render_scene(index, "train", 0, (height, 640))
        if scene.label == 0:
            assert scene.box is None
            continue
        x0, y0, x1, y1 = scene.box
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= height
        assert SIGN_FRACTION[0] * height - 1 <= y1 - y0 <= SIGN_FRACTION[1] * height + 1
        patch = scene.image[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))].astype(int)
        reddish = (patch[..., 0] > patch[..., 1] + 50) & (patch[..., 0] > patch[..., 2] + 50)
        whitish = patch.min(axis=-1) > 120
        assert reddish.mean() > 0.1, index  # the ring
        assert whitish.mean() > 0.05, index  # the disc (blurred, exposure-changed, maybe occluded)


def test_red_ringed_sign_count_does_not_reveal_the_class():
    # the glance must not be able to count its way to the label: targets replace a decoy
    counts = {True: [], False: []}
    for index in range(300):
        scene = render_scene(index, "train", 2, (64, 64))
        counts[scene.label == 0].append(len(scene.decoy_boxes) + (scene.box is not None))
    assert abs(np.mean(counts[True]) - np.mean(counts[False])) < 0.25
    assert min(counts[True]) >= 1  # EMPTY scenes hold decoys too


def test_dataset_follows_the_contract():
    ds = open_dataset("synthsigns", "test", num_samples=3, image_size=SIZE)
    assert len(ds) == 3 and ds.classes == CLASSES
    item = ds[1]
    assert set(item) == {"image", "label", "boxes", "path"}
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (*SIZE, 3)
    assert item["boxes"].dtype == torch.float32 and item["boxes"].shape[1] == 4
    assert item["path"] is None
    scene = render_scene(1, "test", 0, SIZE)
    assert torch.equal(item["image"], torch.from_numpy(scene.image)) and item["label"] == scene.label
    with pytest.raises(IndexError):
        ds[3]


def test_default_size_and_counts():
    ds = open_dataset("synthsigns", "val")
    assert ds.image_size == (960, 1280) and len(ds) == 2000


@pytest.mark.parametrize("kwargs, name", [({"image_size": (10, 10)}, "image_size"), ({"num_samples": 0}, "num_samples")])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        open_dataset("synthsigns", **kwargs)


def test_bad_split_names_itself():
    with pytest.raises(ValueError, match="split"):
        open_dataset("synthsigns", "holdout")
