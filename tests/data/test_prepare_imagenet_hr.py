import numpy as np
from PIL import Image

from msgf.data import open_dataset


def _banded(height, width, band):
    """Green image with red bands of `band` px at the left and right edges (centre crop removes them)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 1] = 200
    image[:, :band] = (230, 0, 0)
    image[:, width - band:] = (230, 0, 0)
    return image


def test_resize_centre_crop_manifests_and_resume(tmp_path, write_image, run_script):
    src = tmp_path / "imagenet"
    # 600x450 (WxH): shorter side 450 -> 439, width 585; the 384 centre keeps source columns ~102..498
    write_image(src / "train" / "n01" / "a.JPEG", _banded(450, 600, 90), quality=95)
    write_image(src / "train" / "n02" / "b.JPEG", np.transpose(_banded(450, 600, 90), (1, 0, 2)).copy(), quality=95)
    write_image(src / "val" / "n01" / "c.png", np.full((500, 500, 3), 77, np.uint8))
    (src / "val" / "n02").mkdir(parents=True)
    (src / "val" / "n02" / "broken.JPEG").write_bytes(b"not a jpeg")
    out = tmp_path / "hr"
    result = run_script("datasets/prepare_imagenet_hr.py", "--src", str(src), "--size", "384", "--out", str(out),
                        "--workers", "2", "--no-progress", check=False)
    assert result.returncode == 1 and "broken.JPEG" in result.stderr
    a = np.asarray(Image.open(out / "train" / "n01" / "a.jpg"))
    b = np.asarray(Image.open(out / "train" / "n02" / "b.jpg"))
    assert a.shape == b.shape == (384, 384, 3)
    for crop in (a, b):  # the red bands fall outside the centre crop
        assert crop[..., 0].max() < 60 and crop[..., 1].min() > 150
    wide = np.asarray(Image.open(src / "train" / "n01" / "a.JPEG"))
    assert wide[:, :80, 0].min() > 150  # the source really had red there
    train = open_dataset(str(out / "train.csv"))
    assert train.classes == ["n01", "n02"] and len(train) == 2 and train[1]["label"] == 1
    val = open_dataset(str(out / "val.csv"))
    assert len(val) == 1 and val.classes == ["n01", "n02"]  # the broken file is left out

    before = (out / "train" / "n01" / "a.jpg").stat().st_mtime_ns
    (out / "val" / "n01" / "c.jpg").unlink()
    run_script("datasets/prepare_imagenet_hr.py", "--src", str(src), "--size", "384", "--out", str(out),
               "--workers", "1", "--no-progress", check=False)
    assert (out / "train" / "n01" / "a.jpg").stat().st_mtime_ns == before  # finished file skipped
    assert (out / "val" / "n01" / "c.jpg").is_file()  # missing file redone
