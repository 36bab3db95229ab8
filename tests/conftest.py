"""Fixtures shared by several test directories."""
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny models (32-64 px) gain nothing from a second thread, while OpenMP threads that
    spin-wait next to another busy process on a 2-core machine slowed a forward pass from 3 ms
    to 1.5 s. Restored afterwards, so the crop-operator tests keep exercising the kernel's
    multi-threaded paths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def photos():
    """Photographs scikit-image ships, downsampled to keep the suite fast; sizes differ on purpose
    (camera is grayscale: decoding makes it RGB). Shared by the inference and deployment tests."""
    from skimage import data

    return {"astronaut": np.ascontiguousarray(data.astronaut()[::4, ::4]),
            "coffee": np.ascontiguousarray(data.coffee()[::4, ::4]),
            "cat": np.ascontiguousarray(data.chelsea()[::3, ::3]),
            "rocket": np.ascontiguousarray(data.rocket()[::4, ::4]),
            "camera": np.ascontiguousarray(data.camera()[::4, ::4])}


@pytest.fixture(scope="session")
def search_report(tmp_path_factory):
    """(path, budgets): the JSON report `msgf search-thresholds --out` writes, with two budgets,
    searched on synthetic trajectories of T=3 and patch sizes 32/48 (the shape of the tiny models
    the inference, evaluation and deployment tests build)."""
    from msgf.cli import main
    from threshold_search import make_trajectories

    root = tmp_path_factory.mktemp("search")
    trajectories = make_trajectories(200, 3, [32, 48], seed=0)
    trajectories.save(root / "val.npz")
    budgets = [float(trajectories.macs[0]) * 1.5, float(trajectories.macs[0]) * 2.5]
    argv = ["search-thresholds", "--trajectories", str(root / "val.npz"), "--method", "geometric",
            "--out", str(root / "report.json")]
    assert main([*argv, *(f for b in budgets for f in ("--budget", str(b)))]) == 0
    return root / "report.json", budgets


# Hostile image files (issue 16, item 3), shared by tests/data/test_hostile_files.py and
# tests/infer/test_hostile_inputs.py. Each is built here from a small valid file, then cut or
# patched, so every test sees exactly what it names.

HOSTILE_TIFF_TILE = 16


def _tiff_entries(data: bytearray) -> dict[int, int]:
    """{tag: byte offset of its 12-byte entry} in the first IFD of a classic little-endian TIFF."""
    import struct

    assert bytes(data[:4]) == b"II*\x00", "expected a classic little-endian TIFF"
    ifd = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd)[0]
    return {struct.unpack_from("<H", data, ifd + 2 + 12 * k)[0]: ifd + 2 + 12 * k for k in range(count)}


def _set_tiff_tag(data: bytearray, tag: int, value: int, count: int | None = None) -> None:
    """Rewrite one entry as LONG: `value` inline (count 1) or as the offset of `count` values."""
    import struct

    entry = _tiff_entries(data)[tag]
    old_count = struct.unpack_from("<I", data, entry + 4)[0]
    struct.pack_into("<HHII", data, entry, tag, 4, old_count if count is None else count, value)


def _tiff_tag_value(data: bytearray, tag: int) -> tuple[int, int]:
    """(count, value or offset) of one entry."""
    import struct

    _, _, count, value = struct.unpack_from("<HHII", data, _tiff_entries(data)[tag])
    return count, value


def hostile_pixels():
    import numpy as np

    rng = np.random.default_rng(16)
    return rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)


def build_hostile_files(root) -> dict:
    """{name: path}: every hostile file of issue 16 item 3, under `root`. Names say what each is."""
    import io
    import os
    import struct
    import zlib

    import numpy as np
    import tifffile
    from PIL import Image

    pixels = hostile_pixels()

    def encoded(fmt, **options) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt, **options)
        return buffer.getvalue()

    def tiled(**options) -> bytearray:
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.tile(pixels, (2, 2, 1)) if options.get("compression") == "jpeg" else pixels,
                         tile=(HOSTILE_TIFF_TILE, HOSTILE_TIFF_TILE), photometric="rgb", **options)
        return bytearray(buffer.getvalue())

    jpeg, png, tiff = encoded("JPEG", quality=90), encoded("PNG"), tiled()
    files = {"truncated.jpg": jpeg[:len(jpeg) // 2], "truncated.png": png[:len(png) // 2],
             "truncated.tif": bytes(tiff[:len(tiff) // 2]),
             "empty.jpg": b"", "empty.png": b"", "empty.tif": b""}

    data = tiled()  # every TileOffsets entry points past the end of the file
    count, at = _tiff_tag_value(data, 324)
    for k in range(count):
        struct.pack_into("<I", data, at + 4 * k, len(data) + 4096 * (k + 1))
    files["offsets_past_eof.tif"] = bytes(data)

    data = tiled()  # ImageWidth/ImageLength claim 10^6 x 10^6 pixels
    _set_tiff_tag(data, 256, 10**6)
    _set_tiff_tag(data, 257, 10**6)
    files["claims_1e6_x_1e6.tif"] = bytes(data)

    side = HOSTILE_TIFF_TILE * 31_623  # 31,623^2 = 1.0e9 tiles of 16 x 16
    data = tiled()
    _set_tiff_tag(data, 256, side)
    _set_tiff_tag(data, 257, side)
    files["claims_1e9_tiles.tif"] = bytes(data)
    for tag in (324, 325):  # ... and TileOffsets/TileByteCounts claim 10^9 entries each
        _set_tiff_tag(data, tag, _tiff_tag_value(data, tag)[1], count=10**9)
    files["claims_1e9_offsets.tif"] = bytes(data)

    data = tiled()  # 65,536^2 pixels: under the pixel limit, but the file lists 48 tiles, not 16.8 million
    _set_tiff_tag(data, 256, 65_536)
    _set_tiff_tag(data, 257, 65_536)
    files["claims_65536_x_65536.tif"] = bytes(data)

    data = tiled(compression="jpeg")  # the first JPEG tile's own frame header claims 65,000 x 65,000
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        offset, length = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    sof = data.find(b"\xff\xc0", offset, offset + length)
    struct.pack_into(">HH", data, sof + 5, 65_000, 65_000)
    files["jpeg_tile_claims_65000.tif"] = bytes(data)

    def png_claiming(width, height) -> bytes:
        data = bytearray(png)
        struct.pack_into(">II", data, 16, width, height)  # IHDR, with its CRC made right
        struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
        return bytes(data)

    files["claims_12000_x_12000.png"] = png_claiming(12_000, 12_000)  # Pillow only warns at this size
    files["claims_1e6_x_1e6.png"] = png_claiming(10**6, 10**6)
    data = bytearray(jpeg)
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 12_000, 12_000)  # libjpeg would fill the missing rows grey
    files["claims_12000_x_12000.jpg"] = bytes(data)

    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in files.items():
        paths[name] = root / name
        paths[name].write_bytes(content)
    for name in ("a_directory.jpg", "a_directory.tif"):
        paths[name] = root / name
        paths[name].mkdir()
    for name in ("symlink_loop.jpg", "symlink_loop.tif"):
        paths[name] = root / name
        paths[name].symlink_to(name)
    for name, target in (("symlink_cycle_a.png", "symlink_cycle_b.png"),
                         ("symlink_cycle_b.png", "symlink_cycle_a.png")):
        paths[name] = root / name
        paths[name].symlink_to(target)
    paths["dangling_symlink.png"] = root / "dangling_symlink.png"
    paths["dangling_symlink.png"].symlink_to("nowhere.png")
    paths["fifo.png"] = root / "fifo.png"  # opening it would block until a writer came
    os.mkfifo(paths["fifo.png"])
    return paths


@pytest.fixture(scope="session")
def hostile_files(tmp_path_factory):
    """{name: path} of the hostile files (build_hostile_files), built once per session."""
    return build_hostile_files(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="session")
def build_hostile():
    """build_hostile_files, for a test that needs the files inside a tree of its own."""
    return build_hostile_files
