from collections import Counter

import numpy as np
import pytest

from msgf.data import open_dataset
from msgf.data.sts import parse_annotations

# Real syntax, one line per case; CRLF endings, an empty line and stray characters included.
ANNOTATIONS = "\r\n".join([
    "a_plain70.jpg:VISIBLE, 950.21, 577.65, 893.46, 522.81, PROHIBITORY, 70_SIGN;",
    "b_empty.jpg:",
    "c_misc_only.jpg:MISC_SIGNS;",
    "d_other_only.jpg:VISIBLE, 300.0, 200.0, 250.0, 150.0, OTHER, PEDESTRIAN_CROSSING;",
    "",
    "e_stray.jpg:VISIBLE, 120.5l, 80.25, 100.0, 60.0 , PROHIBITORY, 50_SIGN;MISC_SIGNS;",
    "f_blurred_only.jpg:BLURRED, 500.0, 400.0, 450.0, 350.0, PROHIBITORY, 80_SIGN;",
    "g_area.jpg:VISIBLE, 110, 110, 100, 100, PROHIBITORY, 50_SIGN;VISIBLE, 240, 240, 200, 200, PROHIBITORY, 80_SIGN;",
    "h_visibility.jpg:BLURRED, 400, 400, 300, 300, PROHIBITORY, 50_SIGN;VISIBLE, 20, 20, 10, 10, PROHIBITORY, 70_SIGN;",
    "i_occluded_first.jpg:OCCLUDED, 400, 400, 300, 300, PROHIBITORY, 50_SIGN;SIDE_ROAD, 30, 30, 10, 10, PROHIBITORY, 70_SIGN;",
    "j_misc_and_speed.jpg:MISC_SIGNS;VISIBLE, 60, 70, 40, 45, PROHIBITORY, 80_SIGN;VISIBLE, 9, 9, 1, 1, OTHER, GIVE_WAY;",
    "k_other_speed.jpg:VISIBLE, 60, 70, 40, 45, PROHIBITORY, 90_SIGN;",
]) + "\r\n"

EXPECTED = {  # file: (label, first box)
    "a_plain70.jpg": ("70_SIGN", (893.46, 522.81, 950.21, 577.65)),  # max corner first in the file
    "b_empty.jpg": ("EMPTY", None),
    "c_misc_only.jpg": ("EMPTY", None),
    "d_other_only.jpg": (None, None),
    "e_stray.jpg": ("50_SIGN", (100.0, 60.0, 120.5, 80.25)),
    "f_blurred_only.jpg": (None, (450.0, 350.0, 500.0, 400.0)),
    "g_area.jpg": ("80_SIGN", (200, 200, 240, 240)),
    "h_visibility.jpg": ("70_SIGN", (10, 10, 20, 20)),
    "i_occluded_first.jpg": (None, (10, 10, 30, 30)),
    "j_misc_and_speed.jpg": ("80_SIGN", (40, 45, 60, 70)),
    "k_other_speed.jpg": (None, None),
}


def test_parse_annotations_applies_the_published_rule(tmp_path):
    path = tmp_path / "annotations.txt"
    path.write_bytes(ANNOTATIONS.encode())
    records = parse_annotations(path)
    assert [r.file for r in records] == list(EXPECTED)
    for record in records:
        label, box = EXPECTED[record.file]
        assert record.label == label, record.file
        if box is None:
            assert record.boxes.shape == (0, 4), record.file
        else:
            np.testing.assert_allclose(record.boxes[0], box, rtol=0, atol=1e-3, err_msg=record.file)
    g = next(r for r in records if r.file == "g_area.jpg")
    assert len(g.boxes) == 2  # both kept, the larger first
    j = next(r for r in records if r.file == "j_misc_and_speed.jpg")
    assert [s.name for s in j.signs] == ["80_SIGN", "GIVE_WAY"]  # MISC_SIGNS dropped


@pytest.mark.parametrize("line, needle", [
    ("x.jpg:SOMETIMES, 1, 2, 3, 4, T, 50_SIGN;", "visibility"),
    ("x.jpg:VISIBLE, 1, 2, 3, PROHIBITORY, 50_SIGN;", "7 comma-separated"),
    ("x.jpg:VISIBLE, abc, 2, 3, 4, T, 50_SIGN;", "number"),
    ("no colon here", "<file>"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, needle):
    path = tmp_path / "annotations.txt"
    path.write_text("ok.jpg:\n" + line + "\n")
    with pytest.raises(ValueError, match=needle) as info:
        parse_annotations(path)
    assert "annotations.txt:2" in str(info.value)


@pytest.mark.parametrize("nested", [False, True])
def test_prepare_sts_writes_manifests_for_both_layouts(tmp_path, write_image, run_script, nested):
    root = tmp_path / "sts"
    for set_name, lines in (("Set1", ANNOTATIONS), ("Set2", "t1.jpg:\nt2.jpg:VISIBLE, 60, 70, 40, 45, X, 50_SIGN;\n")):
        folder = root / set_name / (f"{set_name}Part0" if nested else "")
        (root / set_name).mkdir(parents=True, exist_ok=True)
        (root / set_name / "annotations.txt").write_bytes(lines.encode())
        for line in lines.splitlines():
            if line.strip():
                write_image(folder / line.split(":")[0], np.full((96, 128, 3), 80, np.uint8), quality=90)
    result = run_script("datasets/prepare_sts.py", "--root", str(root), "--out", str(tmp_path / "out"))
    assert "train (Set1): 7 images: EMPTY 2, 50_SIGN 1, 70_SIGN 2, 80_SIGN 2; dropped 4" in result.stdout
    assert "test (Set2): 2 images" in result.stdout
    train = open_dataset(str(tmp_path / "out" / "train.csv"))
    assert train.classes == ["EMPTY", "50_SIGN", "70_SIGN", "80_SIGN"]
    labels = Counter(train.classes[train[i]["label"]] for i in range(len(train)))
    assert labels == {"EMPTY": 2, "50_SIGN": 1, "70_SIGN": 2, "80_SIGN": 2}
    assert train[0]["image"].shape == (96, 128, 3)


def test_prepare_sts_refuses_missing_images(tmp_path, run_script):
    for set_name in ("Set1", "Set2"):
        (tmp_path / set_name).mkdir()
        (tmp_path / set_name / "annotations.txt").write_text("gone.jpg:\n")
    result = run_script("datasets/prepare_sts.py", "--root", str(tmp_path), check=False)
    assert result.returncode != 0 and "gone.jpg" in result.stderr
