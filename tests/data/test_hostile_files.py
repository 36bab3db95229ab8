"""Corrupt and hostile files at every reading boundary (issue 16, item 3).

The files are built in tests/conftest.py (build_hostile_files): truncated JPEG/PNG/TIFF, empty
files, TIFFs whose tags claim 10^6 x 10^6 pixels, 10^9 tiles or 10^9 tile offsets, tile offsets
past the end of the file, a JPEG tile whose own header claims 65,000 x 65,000, PNG/JPEG headers
claiming 12,000^2 and 10^6^2 pixels, directories named like images, symlink loops, a dangling
symlink and a FIFO. Every one must give a named error (the type below, and the file's path in the
message) at open_image / read_region / read_glance, decode_image and the datasets, and none may
allocate what its header claims (checked in a child process with its address space capped).
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from msgf.data import CorruptImageError, ImageTooLargeError, decode, open_dataset, read_manifest, regions
from msgf.data.decode import check_image_file, decode_image
from msgf.data.regions import open_image

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
              pytest.mark.filterwarnings("ignore:Tag data larger than file:UserWarning")]

TOO_LARGE_TIFF = (ImageTooLargeError, "more than msgf.data.regions.MAX_TIFF_PIXELS")
TOO_LARGE_IMAGE = (ImageTooLargeError, "more than msgf.data.decode.MAX_IMAGE_PIXELS")
PILLOW_LIMIT = (ImageTooLargeError, "raise PIL.Image.MAX_IMAGE_PIXELS")
NOT_A_FILE = {"a_directory": "is a directory", "symlink_loop": "is a symlink loop",
              "symlink_cycle": "is a symlink loop", "dangling_symlink": "is a dangling symlink",
              "fifo": "is not a regular file"}

# name -> (error type, message fragment) for open_image (+ read_region + read_glance), and for decode_image
EXPECTED = {
    "truncated.jpg": ((CorruptImageError, "truncated"), (CorruptImageError, "truncated")),
    "truncated.png": ((CorruptImageError, "truncated"), (CorruptImageError, "truncated")),
    "truncated.tif": ((CorruptImageError, "lie past the end of the file"), (CorruptImageError, "truncated")),
    "empty.jpg": ((CorruptImageError, "cannot identify"), (CorruptImageError, "cannot identify")),
    "empty.png": ((CorruptImageError, "cannot identify"), (CorruptImageError, "cannot identify")),
    "empty.tif": ((CorruptImageError, "not a TIFF file"), (CorruptImageError, "cannot identify")),
    "offsets_past_eof.tif": ((CorruptImageError, "48 of its 48 tiles or strips lie past the end of the file"),
                             (CorruptImageError, "truncated")),
    "claims_1e6_x_1e6.tif": (TOO_LARGE_TIFF, PILLOW_LIMIT),
    "claims_1e9_tiles.tif": (TOO_LARGE_TIFF, PILLOW_LIMIT),
    "claims_1e9_offsets.tif": (TOO_LARGE_TIFF, (CorruptImageError, "cannot identify")),
    "claims_65536_x_65536.tif": ((CorruptImageError, "in 16,777,216 tiles or strips of 16 x 16, but lists 48 offsets"),
                                 PILLOW_LIMIT),
    "jpeg_tile_claims_65000.tif": ((CorruptImageError, "claims 65000 x 65000 pixels in its own header"),
                                   (CorruptImageError, "decoder error")),
    "claims_12000_x_12000.png": (TOO_LARGE_IMAGE, TOO_LARGE_IMAGE),
    "claims_1e6_x_1e6.png": (PILLOW_LIMIT, PILLOW_LIMIT),
    "claims_12000_x_12000.jpg": (TOO_LARGE_IMAGE, TOO_LARGE_IMAGE),
}
for _name in ("a_directory.jpg", "a_directory.tif", "symlink_loop.jpg", "symlink_loop.tif", "symlink_cycle_a.png",
              "symlink_cycle_b.png", "dangling_symlink.png", "fifo.png"):
    _fragment = NOT_A_FILE[_name.rsplit(".", 1)[0].rstrip("_ab")]
    EXPECTED[_name] = ((ValueError, _fragment), (CorruptImageError, _fragment))  # open_image: the "path" argument
# the lying headers: their errors must come from the checks, not from an allocation that failed
LYING_HEADERS = ["claims_1e6_x_1e6.tif", "claims_1e9_tiles.tif", "claims_1e9_offsets.tif", "claims_65536_x_65536.tif",
                 "jpeg_tile_claims_65000.tif", "claims_12000_x_12000.png", "claims_1e6_x_1e6.png",
                 "claims_12000_x_12000.jpg", "offsets_past_eof.tif", "truncated.tif"]


def test_every_hostile_file_has_an_expectation(hostile_files):
    assert sorted(hostile_files) == sorted(EXPECTED)


def _read_all(path):
    reader = open_image(path)
    try:
        reader.read_region(0, 0, 8, 8)
        reader.read_glance(32, 32)
    finally:
        reader.close()


@pytest.mark.parametrize("reader", ["open_image", "decode_image"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_reader_names_the_file(hostile_files, name, reader):
    expected = EXPECTED[name][0 if reader == "open_image" else 1]
    error_type, fragment = expected
    path = hostile_files[name]
    with pytest.raises(error_type) as caught:
        _read_all(path) if reader == "open_image" else decode_image(path)
    message = str(caught.value)
    assert str(path) in message and fragment in message, message
    assert "allocate" not in message.lower()
    if reader == "open_image" and error_type is ValueError:  # a bad path argument, named as the argument
        assert message.startswith("path: ") and not isinstance(caught.value, CorruptImageError)


def test_header_checks_refuse_before_decoding(hostile_files):
    # check_image_file (what skip_corrupt runs when a dataset is built) reads headers only: it refuses
    # every file whose header is unreadable or too large, and lets through those that fail only when decoded
    passes = set()
    for name, path in hostile_files.items():
        try:
            check_image_file(path)
            passes.add(name)
        except CorruptImageError as error:
            assert str(path) in str(error)
    assert passes == {"truncated.jpg", "truncated.png", "truncated.tif", "offsets_past_eof.tif",
                      "jpeg_tile_claims_65000.tif"}


# ---- bounded memory: a child process whose address space is capped a little above its warmed-up size

CHILD = r"""
import json, logging, resource, sys, warnings
from pathlib import Path
logging.disable(logging.CRITICAL)
warnings.simplefilter("ignore")
import numpy as np
from msgf.data.decode import decode_image
from msgf.data.regions import open_image

def status(key):
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields[key].split()[0]) * 1024

def run(op, path):
    if op == "decode":
        return decode_image(path).shape
    reader = open_image(path)
    try:
        if op == "glance1":
            return reader.read_glance(1, 1).ravel().tolist()
        return reader.read_region(0, 0, 8, 8).shape, reader.read_glance(32, 32).shape
    finally:
        reader.close()

headroom, warm_tif, warm_png, jobs = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
run("open", warm_tif), run("decode", warm_png), run("open", warm_png)  # imports, zarr's threads, Pillow's plugins
limit = status("VmSize") + headroom
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
report = []
for op, path in jobs:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    try:
        outcome = ["ok", repr(run(op, path))]
    except BaseException as error:
        outcome = [type(error).__name__, str(error)]
    report.append([op, path, *outcome, status("VmHWM") - before])
print(json.dumps(report))
"""

HEADROOM = 512 * 2**20  # address space the child may add to its warmed-up size: far below any claimed size


def _run_child(jobs, tmp_path):
    warm_tif, warm_png = tmp_path / "warm.tif", tmp_path / "warm.png"
    pixels = np.zeros((256, 256, 3), np.uint8)
    tifffile.imwrite(warm_tif, pixels, tile=(64, 64), photometric="rgb", compression="zlib")
    Image.fromarray(pixels).save(warm_png)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(HEADROOM), str(warm_tif), str(warm_png), json.dumps(jobs)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_lying_headers_allocate_nothing_like_their_claims(hostile_files, tmp_path):
    jobs = [[op, str(hostile_files[name])] for name in LYING_HEADERS for op in ("open", "decode")]
    report = _run_child(jobs, tmp_path)
    peaks = {}
    for op, path, outcome, message, peak in report:
        name = Path(path).name
        assert outcome in ("CorruptImageError", "ImageTooLargeError"), (op, name, outcome, message)
        assert path in message and "allocate" not in message.lower() and "Memory" not in outcome, (op, name, message)
        peaks[f"{op} {name}"] = peak
    # header-sized allocations would be 0.4 GB (12,000^2 RGB) to 3 TB (10^6^2 RGB); reading the headers costs ~nothing
    assert max(peaks.values()) < 48 * 2**20, peaks


def test_a_glance_of_a_tile_bomb_stays_within_its_strip_budget(tmp_path):
    # A consistent TIFF (every tag true) claiming 12,288^2 pixels whose 576 tile offsets all point at one
    # 800-byte deflated tile of value 200. Without a pyramid, the glance reduces the whole level: before
    # the fix it read strips of `factor` rows at full width (6,144 x 12,288 x 3 = 226 MB) and summed
    # blocks in uint32, which overflowed (a 1 x 1 glance of an all-200 image came out 8).
    import zlib

    side, tile = 12_288, 512
    encoded = zlib.compress(np.full((tile, tile, 3), 200, np.uint8).tobytes(), 9)
    path = tmp_path / "tile_bomb.tif"
    tifffile.imwrite(path, iter([encoded] * (side // tile) ** 2), shape=(side, side, 3), dtype=np.uint8,
                     tile=(tile, tile), compression="zlib", photometric="rgb")
    assert path.stat().st_size < 2**20
    ((op, _, outcome, message, peak),) = _run_child([["glance1", str(path)]], tmp_path)
    assert outcome == "ok" and message == "[200, 200, 200]", message
    assert peak < regions.GLANCE_STRIP_BYTES * 4, peak  # a piece and its block sums, not a 226 MB strip


def _block_mean(pixels, factor):  # oracle: numpy on the whole image, edges padded by repetition
    h, w, c = pixels.shape
    padded = np.pad(pixels, ((0, -h % factor), (0, -w % factor), (0, 0)), mode="edge")
    sums = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor, c).sum(
        axis=(1, 3), dtype=np.uint64)
    return ((sums + factor * factor // 2) // (factor * factor)).astype(np.uint8)


@pytest.mark.parametrize("factor, budget", [(43, 16 * 2**20), (43, 10_000), (43, 1_000), (3, 16 * 2**20), (3, 20),
                                            (3, 8), (1, 16 * 2**20), (1, 1_000)])
def test_block_reduction_is_exact_whatever_the_piece_size(tmp_path, monkeypatch, factor, budget):
    # budget (pixels per piece): whole-width strips, groups of block columns, parts of one block column
    pixels = np.random.default_rng(3).integers(0, 256, (301, 389, 3), dtype=np.uint8)
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, pixels, tile=(64, 64), photometric="rgb")
    monkeypatch.setattr(regions, "GLANCE_STRIP_BYTES", budget * 3)
    if budget < 100:  # pieces of 3 x 6 or 2 x 3 pixels: keep it quick with a crop of the image
        pixels = pixels[:40, :50]
        tifffile.imwrite(path, pixels, tile=(16, 16), photometric="rgb")
    reader = open_image(path)
    assert np.array_equal(reader._block_reduced(0, factor), _block_mean(pixels, factor))


# ---- the limits: named, and what they say to raise

def test_pixel_limits_name_the_file_and_the_constant_to_raise(tmp_path, monkeypatch, write_image):
    png = write_image(tmp_path / "photo.png", np.zeros((96, 128, 3), np.uint8))
    tif = tmp_path / "photo.tif"
    tifffile.imwrite(tif, np.zeros((96, 128, 3), np.uint8), tile=(32, 32), photometric="rgb")
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 96 * 128 - 1)
    for call in (decode_image, check_image_file, open_image):
        with pytest.raises(ImageTooLargeError, match=r"photo\.png.* 128 x 96 = 12,288 pixels.*raise that limit"):
            call(png)
    monkeypatch.setattr(regions, "MAX_TIFF_PIXELS", 96 * 128 - 1)
    with pytest.raises(ImageTooLargeError, match=r"photo\.tif.*MAX_TIFF_PIXELS = 12,287; if it is a real image"):
        open_image(tif)
    monkeypatch.setattr(regions, "MAX_TIFF_PIXELS", 96 * 128)
    monkeypatch.setattr(regions, "MAX_TIFF_CHUNK_BYTES", 32 * 32 * 3 - 1)
    with pytest.raises(ImageTooLargeError, match=r"photo\.tif.*32 x 32 x 3 samples.*MAX_TIFF_CHUNK_BYTES"):
        open_image(tif)
    monkeypatch.setattr(regions, "MAX_TIFF_CHUNK_BYTES", 32 * 32 * 3)
    assert open_image(tif).read_region(0, 0, 96, 128).shape == (96, 128, 3)


def test_a_jpeg2000_tile_whose_header_lies_is_refused_before_decoding(tmp_path):
    import struct

    pixels = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "j2k.tif"
    tifffile.imwrite(path, pixels, tile=(32, 32), photometric="rgb", compression="jpeg2000")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        first = tif.pages[0].dataoffsets[0]
    siz = data.find(b"\xff\x4f\xff\x51", first)
    struct.pack_into(">II", data, siz + 8, 60_000, 60_000)  # Xsiz, Ysiz of the first tile's codestream
    path.write_bytes(bytes(data))
    reader = open_image(path)
    with pytest.raises(CorruptImageError, match=r"j2k\.tif.*tile 0 claims 60000 x 60000 pixels in its own header"):
        reader.read_region(0, 0, 8, 8)
    assert reader.read_region(40, 40, 8, 8).shape == (8, 8, 3)  # the other tiles still read


def test_sixteen_bit_tiffs_are_refused_by_name(tmp_path):
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, np.zeros((32, 32, 3), np.uint16), photometric="rgb")
    with pytest.raises(CorruptImageError, match=r"deep\.tif.*only 8-bit images"):
        open_image(path)


# ---- datasets: manifests and ImageFolder trees over the hostile files

def _good_images(folder, write_image, n=2):
    rng = np.random.default_rng(5)
    return [write_image(folder / f"good{k}.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for k in range(n)]


def test_a_manifest_of_hostile_files_fails_on_each_by_name(hostile_files, tmp_path, write_image):
    good = _good_images(tmp_path, write_image)
    manifest = tmp_path / "all.csv"
    rows = [(str(p), "good") for p in good] + [(str(p), "bad") for p in hostile_files.values()]
    manifest.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    dataset = open_dataset(str(manifest))
    assert len(dataset) == len(rows)
    for index, (path, label) in enumerate(rows):
        if label == "good":
            assert dataset[index]["image"].shape == (40, 50, 3)
            continue
        with pytest.raises(CorruptImageError) as caught:
            dataset[index]
        assert path in str(caught.value)


def test_skip_corrupt_names_what_it_skips_and_keeps_only_good_files(hostile_files, tmp_path, write_image):
    good = _good_images(tmp_path, write_image)
    manifest = tmp_path / "all.jsonl"
    rows = [(str(p), "good") for p in good] + [(str(p), "bad") for p in sorted(hostile_files.values())]
    manifest.write_text("".join(json.dumps({"path": p, "label": label}) + "\n" for p, label in rows))
    with pytest.warns(UserWarning, match=r"skipped 18 of 25 files that cannot be opened .*: .* and 13 more"):
        dataset = open_dataset(str(manifest), skip_corrupt=True)
    assert len(dataset) == 7  # the good files, and the 5 whose headers read but whose pixels do not
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = [dataset[k]["path"] for k in range(len(dataset))]
    assert set(paths) == {str(p) for p in good}
    named = " ".join(str(w.message) for w in caught)
    for name in ("truncated.jpg", "truncated.png", "truncated.tif", "offsets_past_eof.tif",
                 "jpeg_tile_claims_65000.tif"):
        assert str(hostile_files[name]) in named


def test_an_image_folder_with_hostile_files_lists_and_names_them(tmp_path, write_image, build_hostile):
    root = tmp_path / "tree"
    good = _good_images(root / "good", write_image)
    (root / "bad").mkdir()
    bad = build_hostile(root / "bad")
    (root / "bad" / "loop_dir").symlink_to(".")  # a directory symlink loop: not followed
    dataset = open_dataset(str(root))
    assert dataset.classes == ["bad", "good"]
    # everything named like an image is listed, directories apart (a_directory.jpg is searched, and empty)
    listed = {str(root / r.path) for r in dataset.records}
    assert listed == {str(p) for p in good} | {str(p) for p in bad.values() if not p.is_dir()}
    for index, record in enumerate(dataset.records):
        if record.label == "good":
            assert dataset[index]["label"] == 1
            continue
        with pytest.raises(CorruptImageError) as caught:
            dataset[index]
        assert str(root / record.path) in str(caught.value)


# ---- manifests: missing, duplicate and bad entries

CSV_HEADER = "path,label,boxes\n"


@pytest.mark.parametrize("name, text, fragment", [
    ("empty_path.csv", CSV_HEADER + "a.png,cat,\n,cat,\n", r"empty_path\.csv:3: path is empty"),
    ("short_row.csv", CSV_HEADER + "a.png,cat,\nb.png\n", r"short_row\.csv:3: no label \(the row has fewer fields"),
    ("no_fields.csv", "path,label\na.png,cat\n\"\"\n", r"no_fields\.csv:3: (path is empty|no label)"),
    ("duplicate.csv", CSV_HEADER + "a.png,cat,\nb.png,dog,\n./a.png,dog,\n",
     r"duplicate\.csv:4: path './a\.png' is listed twice \(first at .*duplicate\.csv:2\)"),
    ("duplicate.jsonl", '{"path": "sub/a.png", "label": "cat"}\n{"path": "sub//a.png", "label": "cat"}\n',
     r"duplicate\.jsonl:2: path 'sub//a\.png' is listed twice"),
    ("empty_label.csv", CSV_HEADER + "a.png, ,\n", r"empty_label\.csv:2: label is empty"),
    ("null_label.jsonl", '{"path": "a.png", "label": null}\n', r"null_label\.jsonl:1: label must be a string"),
    ("bool_label.jsonl", '{"path": "a.png", "label": true}\n', r"bool_label\.jsonl:1: label must be a string"),
    ("list_label.jsonl", '{"path": "a.png", "label": ["cat"]}\n', r"list_label\.jsonl:1: label must be a string"),
    ("null_path.jsonl", '{"path": null, "label": "cat"}\n', r"null_path\.jsonl:1: path must be a string"),
    ("no_label.jsonl", '{"path": "a.png"}\n', r"no_label\.jsonl:1: not a manifest row"),
    ("not_an_object.jsonl", '["a.png", "cat"]\n', r"not_an_object\.jsonl:1: not a manifest row"),
    ("extra_field.csv", "path,label\nmy,photo.png,cat\n", r"extra_field\.csv:2: 3 fields, the header has 2"),
    ("bad_box.csv", CSV_HEADER + "a.png,cat,1 2 x 4\n", r"bad_box\.csv:2: boxes must be groups of 4 numbers"),
    ("nan_box.jsonl", '{"path": "a.png", "label": "cat", "boxes": [[1, 2, NaN, 4]]}\n',
     r"nan_box\.jsonl:1: boxes must be finite"),
    ("inf_box.csv", CSV_HEADER + "a.png,cat,0 0 inf 4\n", r"inf_box\.csv:2: boxes must be finite"),
])
def test_bad_manifest_rows_name_the_file_and_line(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=fragment):
        read_manifest(path)
    with pytest.raises(ValueError, match=fragment):
        open_dataset(str(path))


def test_bad_manifest_files_and_classes_name_themselves(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("path,label\na.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv: not UTF-8 text"):
        read_manifest(latin1)
    directory = tmp_path / "folder.csv"
    directory.mkdir()
    with pytest.raises(ValueError, match=r"source: manifest '.*folder\.csv' is a directory"):
        read_manifest(directory)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop.name)
    with pytest.raises(ValueError, match=r"loop\.jsonl' is a symlink loop"):
        read_manifest(loop)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.jsonl' lists no images"):
        open_dataset(str(empty))
    labelled = tmp_path / "split" / "train.csv"
    labelled.parent.mkdir()
    labelled.write_text("path,label\na.png,cat\nb.png,bird\n")
    (labelled.parent / "classes.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match=r"classes\.txt: classes \['cat'\] are listed more than once"):
        read_manifest(labelled)
    (labelled.parent / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match=r"train\.csv: labels \['bird'\] are not listed in .*classes\.txt"):
        read_manifest(labelled)


def test_a_missing_listed_file_fails_by_name_when_read_or_is_skipped(tmp_path, write_image):
    good = _good_images(tmp_path, write_image, n=1)[0]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{good.name},cat\nmissing.png,cat\n")
    dataset = open_dataset(str(manifest))
    with pytest.raises(CorruptImageError, match=r"missing\.png.* does not exist"):
        dataset[1]
    with pytest.warns(UserWarning, match=r"skipped 1 of 2 files that cannot be opened .*: missing\.png"):
        assert len(open_dataset(str(manifest), skip_corrupt=True)) == 1


def test_integer_labels_in_jsonl_are_class_names(tmp_path):
    manifest = tmp_path / "ids.jsonl"
    manifest.write_text('{"path": "a.png", "label": 3}\n{"path": "b.png", "label": "3"}\n')
    records, classes = read_manifest(manifest)
    assert [r.label for r in records] == ["3", "3"] and classes == ["3"]


def test_mutated_tiff_headers_give_named_errors_in_bounded_memory(tmp_path):
    """300 copies of a small tiled TIFF with 1-4 bytes changed, mostly in its header and first
    IFD (sizes, tile shapes, offsets, counts, types): each reads, or fails with the reader's
    named error, in the capped child; none may raise anything else or grow by a header's claim."""
    import io
    import struct

    rng = np.random.default_rng(16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), tile=(16, 16), photometric="rgb",
                     compression="zlib")
    valid = buffer.getvalue()
    ifd = struct.unpack_from("<I", valid, 4)[0]
    header_end = ifd + 2 + 12 * struct.unpack_from("<H", valid, ifd)[0] + 4
    jobs = []
    for k in range(300):
        data = bytearray(valid)
        for _ in range(rng.integers(1, 5)):
            at = int(rng.integers(ifd, header_end)) if rng.random() < 0.7 else int(rng.integers(0, len(data)))
            data[at] = int(rng.integers(0, 256))
        path = tmp_path / f"mutant{k:03d}.tif"
        path.write_bytes(bytes(data))
        jobs.append(["open", str(path)])
    report = _run_child(jobs, tmp_path)
    outcomes = {}
    for _, path, outcome, message, peak in report:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert outcome in ("ok", "CorruptImageError", "ImageTooLargeError"), (path, outcome, message)
        assert outcome == "ok" or path in message, (path, message)
        assert peak < 48 * 2**20, (path, peak)
    assert outcomes.get("CorruptImageError", 0) > 50, outcomes  # the mutations did break most files
