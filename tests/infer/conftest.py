import numpy as np
import pytest
import torch
from PIL import Image

import msgf
from msgf.checkpoint import update_thresholds
from msgf.engine import Thresholds, anytime

CLASSES = ["astronaut", "coffee", "cat", "rocket"]
BUDGET = 2e8  # the budget the test thresholds are stored under (a label, not a measured cost)


@pytest.fixture(scope="module", autouse=True)
def _tiny_models_run_single_threaded(single_torch_thread):
    """See tests/conftest.py: single_torch_thread."""


@pytest.fixture(scope="session")
def photo_files(photos, tmp_path_factory):
    """{name: path}: JPEG for some photos, PNG for the others."""
    root = tmp_path_factory.mktemp("photos")
    files = {}
    for k, (name, pixels) in enumerate(photos.items()):
        files[name] = root / f"{name}.{'jpg' if k % 2 == 0 else 'png'}"
        Image.fromarray(pixels).save(files[name], quality=90)
    return files


def spread_rows(conf_levels) -> list[list[float]]:
    """Per step, thresholds (K=2) at the confidences' terciles, so that some samples exit, some
    continue with 32 and some with 48 px patches (5 photos: the terciles fall between values)."""
    return [np.quantile(np.asarray(conf, dtype=np.float64), [2 / 3, 1 / 3]).tolist() for conf in conf_levels]


@pytest.fixture(scope="session")
def model_and_ckpt(photo_files, tmp_path_factory):
    """An untrained resnet18 GFNet (glance 32, patches 32/48, T=3) saved with thresholds for
    BUDGET that mix exit steps and patch sizes on the test photos."""
    from msgf.data import decode_image

    torch.manual_seed(0)
    model = msgf.build_model("resnet18", num_classes=4, glance_size=32, patch_sizes=[32, 48], T=3,
                             class_names=CLASSES).eval()
    levels = [[], []]
    for path in photo_files.values():
        out = anytime(model, torch.from_numpy(decode_image(path))[None], 48)
        levels[0].append(float(out.conf[0, 0]))
        levels[1].append(float(out.conf[0, 1]))
    thresholds = Thresholds(spread_rows(levels), budget=BUDGET)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    msgf.save_checkpoint(model, path)
    update_thresholds(path, thresholds)
    model.exit_thresholds = [thresholds]
    return model, path


@pytest.fixture(scope="session")
def model(model_and_ckpt):
    return model_and_ckpt[0]


@pytest.fixture(scope="session")
def ckpt(model_and_ckpt):
    return model_and_ckpt[1]


@pytest.fixture(scope="session")
def thresholds(model):
    return model.exit_thresholds[0]


def write_pyramid_tiff(path, pixels: np.ndarray, tile: int = 128) -> list[int]:
    """A tiled TIFF with reduced levels (1/2, 1/4, ... down to one tile) as SubIFDs, lossless, so
    the pixels read back are exactly `pixels` at level 0. Returns the level heights."""
    import tifffile

    levels = [pixels]
    while min(levels[-1].shape[:2]) // 2 >= tile:
        levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(2)))
    options = dict(tile=(tile, tile), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(path) as writer:
        writer.write(levels[0], subifds=len(levels) - 1, **options)
        for level in levels[1:]:
            writer.write(level, subfiletype=1, **options)
    return [level.shape[0] for level in levels]


@pytest.fixture(scope="session")
def small_tiff(photos, tmp_path_factory):
    """A 600x800 tiled pyramidal TIFF of the astronaut, and its pixels."""
    pixels = np.asarray(Image.fromarray(photos["astronaut"]).resize((800, 600), Image.BILINEAR))
    path = tmp_path_factory.mktemp("tiff") / "astronaut_tiled.tif"
    assert len(write_pyramid_tiff(path, pixels)) >= 3
    return path, pixels


def step_api_oracle(model, path, sides) -> tuple[list[tuple[int, float]], list[list[int]]]:
    """(prediction, confidence) after each step and focus boxes of the route glance -> sides, run through the
    model's step API on the TIFF read whole by tifffile (the in-memory path on the same pixels),
    with the glance from the reader's pyramid as the region path takes it."""
    import tifffile

    from msgf import ops
    from msgf.data.regions import open_image

    full = torch.from_numpy(tifffile.imread(path))[None]
    reader = open_image(path)
    size = model.config.glance_size
    with torch.inference_mode():
        # a pyramid level stands for the whole image: pi places patches by the full (H, W)
        state = model.glance(torch.from_numpy(reader.read_glance(size, size))[None],
                             torch.tensor([full.shape[1:3]], dtype=torch.float32))
        steps, boxes = [(int(state.logits.argmax()), float(state.confidence[0]))], []
        for side in sides:
            proposal = model.propose(state, side)
            state = model.focus(state, full, proposal.mean, side, proposal=proposal)
            steps.append((int(state.logits.argmax()), float(state.confidence[0])))
            boxes.append(ops.focus_boxes(proposal.mean.clamp(0, 1), side, full.shape[1:3])[0, 1:].int().tolist())
    reader.close()
    return steps, boxes


@pytest.fixture(scope="session")
def step_oracle():
    return step_api_oracle


@pytest.fixture(scope="session")
def forced():
    """Thresholds forcing the route glance -> 32 px -> 48 px (K=2, T=3): at step 1 only the 32 px
    threshold (inf) is >= any confidence, at step 2 only the 48 px one."""
    return Thresholds([[np.inf, -np.inf], [-np.inf, np.inf]])


@pytest.fixture(scope="session")
def write_tiff():
    return write_pyramid_tiff
