import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image

from msgf.data import CorruptImageError, regions
from msgf.data.regions import open_image

H, W = 700, 900


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (35, 45, 3), dtype=np.uint8)).resize((W, H), Image.BICUBIC))
    return np.ascontiguousarray(smooth)


@pytest.fixture(scope="module")
def pyramid_tif(tmp_path_factory, pixels):
    path = tmp_path_factory.mktemp("tif") / "pyramid.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(pixels, tile=(128, 128), subifds=2, photometric="rgb")
        writer.write(pixels[::2, ::2], tile=(128, 128), subfiletype=1, photometric="rgb")
        writer.write(pixels[::4, ::4], tile=(128, 128), subfiletype=1, photometric="rgb")
    return path


def _torch_glance(array, h, w):  # oracle: torch's antialiased bilinear on the whole array
    t = torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float()
    return F.interpolate(t, size=(h, w), mode="bilinear", antialias=True)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("y, x, h, w", [(0, 0, 96, 96), (100, 120, 160, 128), (H - 50, W - 70, 50, 70), (127, 127, 2, 2)])
def test_tiff_regions_equal_a_full_read(pyramid_tif, y, x, h, w):
    full = tifffile.imread(pyramid_tif)  # oracle: tifffile's whole-image read
    reader = open_image(pyramid_tif)
    assert reader.shape == (H, W, 3)
    region = reader.read_region(y, x, h, w)
    assert region.dtype == np.uint8 and np.array_equal(region, full[y:y + h, x:x + w])


def test_tiff_glance_uses_the_smallest_sufficient_level(pyramid_tif, pixels):
    reader = open_image(pyramid_tif)
    assert reader.glance_level(96, 96) == 2 and reader.glance_level(200, 200) == 1 and reader.glance_level(400, 400) == 0
    glance = reader.read_glance(96, 128)
    assert glance.shape == (96, 128, 3) and glance.dtype == np.uint8
    level2 = tifffile.imread(pyramid_tif, level=2)
    assert np.abs(glance.astype(float) - _torch_glance(level2, 96, 128)).max() <= 1.01


def test_strip_reduced_glance_matches_a_whole_image_glance(tmp_path, pixels, monkeypatch):
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, pixels, tile=(64, 64), photometric="rgb")
    monkeypatch.setattr(regions, "GLANCE_DIRECT_PIXELS", 1000)  # force the bounded-memory path
    monkeypatch.setattr(regions, "GLANCE_STRIP_BYTES", 40 * W * 3)  # strips of ~40 rows
    glance = open_image(path).read_glance(96, 96)
    difference = np.abs(glance.astype(float) - _torch_glance(pixels, 96, 96))
    assert difference.mean() < 1.0 and difference.max() <= 6


def test_png_and_jpeg_are_decoded_once_and_regions_match_pillow(tmp_path, pixels):
    for name in ("a.png", "a.jpg"):
        Image.fromarray(pixels).save(tmp_path / name)
        expected = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        reader = open_image(tmp_path / name)
        assert reader.shape == (H, W, 3)
        assert np.array_equal(reader.read_region(10, 20, 30, 40), expected[10:40, 20:60])
        assert np.abs(reader.read_glance(50, 60).astype(float) - _torch_glance(expected, 50, 60)).max() <= 1.01


@pytest.mark.parametrize("args, name", [((-1, 0, 10, 10), "y"), ((0, W - 5, 10, 10), "x"), ((H - 5, 0, 10, 10), "y"),
                                        ((0, 0, 0, 10), "h"), ((0, 0, 10, 0), "w")])
def test_regions_outside_the_image_raise_naming_the_argument(pyramid_tif, args, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        open_image(pyramid_tif).read_region(*args)


def test_non_integer_arguments_raise_type_error(pyramid_tif):
    with pytest.raises(TypeError, match="^y:"):
        open_image(pyramid_tif).read_region(1.5, 0, 4, 4)


def test_corrupt_files_raise_naming_them(tmp_path, pyramid_tif):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(CorruptImageError, match="broken.tif"):
        open_image(bad)
    truncated = tmp_path / "cut.tif"
    data = pyramid_tif.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptImageError, match="cut.tif"):
        reader = open_image(truncated)
        reader.read_region(H - 100, W - 100, 100, 100)
    with pytest.raises(ValueError, match="path"):
        open_image(tmp_path / "missing.png")


def test_a_region_decodes_only_the_tiles_it_touches(tmp_path, pixels):
    # poison the last tile: regions elsewhere must still read, the poisoned one must fail
    path = tmp_path / "poisoned.tif"
    tifffile.imwrite(path, pixels, tile=(128, 128), photometric="rgb", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[-1], tif.pages[0].databytecounts[-1]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    reader = open_image(path)
    assert np.array_equal(reader.read_region(0, 0, 256, 300), pixels[:256, :300])
    with pytest.raises(CorruptImageError, match="poisoned.tif"):
        reader.read_region(H - 10, W - 10, 10, 10)
