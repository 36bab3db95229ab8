"""Stage 0's locator for f_G (msgf.train.locate), and the glance set f_G trains on with the object
windows f_L trains on (msgf.train.data)."""
from __future__ import annotations

import math

import pytest
import torch

from msgf import ops
from msgf.train.data import GlanceSet, object_region
from msgf.train.locate import Locator, locate_loss, locate_targets, top_cell_hits
from msgf.train.sampling import training_crops


def _cells_by_brute_force(boxes, hw, grid):
    """Per cell, the centres inside its rectangle [i H/h, (i+1) H/h) x [j W/w, (j+1) W/w)."""
    (height, width), (rows, cols) = hw, grid
    found = {}
    for x0, y0, x1, y1 in boxes:
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        cell_h, cell_w = height / rows, width / cols
        for i in range(rows):
            for j in range(cols):
                if i * cell_h <= cy < (i + 1) * cell_h and j * cell_w <= cx < (j + 1) * cell_w:
                    found[(i, j)] = ((cy - i * cell_h) / cell_h, (cx - j * cell_w) / cell_w)
    return found


def test_locate_targets_match_a_brute_force_cell_search():
    gen = torch.Generator().manual_seed(0)
    hw, grid = (960, 1280), (6, 6)
    boxes = []
    for count in (0, 1, 2, 3):
        corners = torch.rand((count, 2), generator=gen) * torch.tensor([1240.0, 920.0])
        sides = 10 + torch.rand((count, 1), generator=gen) * 30
        boxes.append(torch.cat([corners, corners + sides], dim=1))
    presence, offsets = locate_targets(boxes, hw, grid)
    for b, sample in enumerate(boxes):
        expected = _cells_by_brute_force(sample.tolist(), hw, grid)
        assert set(map(tuple, presence[b].nonzero().tolist())) == set(expected)
        for (i, j), (dy, dx) in expected.items():
            assert offsets[b, 0, i, j].item() == pytest.approx(dy, abs=1e-5)
            assert offsets[b, 1, i, j].item() == pytest.approx(dx, abs=1e-5)


def test_locate_targets_clamp_centres_on_the_far_edges():
    presence, offsets = locate_targets([torch.tensor([[1270.0, 950.0, 1280.0, 960.0]])], (960, 1280), (3, 3))
    assert presence[0, 2, 2] == 1 and presence.sum() == 1
    assert 0.9 < offsets[0, 0, 2, 2] <= 1 and 0.9 < offsets[0, 1, 2, 2] <= 1


def test_locate_loss_is_small_for_the_truth_and_large_for_a_wrong_cell():
    boxes = [torch.tensor([[100.0, 100.0, 140.0, 140.0]]), torch.zeros((0, 4))]
    presence, offsets = locate_targets(boxes, (960, 1280), (3, 3))
    truth = torch.full((2, 3, 3, 3), -12.0)
    truth[:, 0][presence.bool()] = 12.0
    truth[:, 1:] = torch.logit(offsets.clamp(1e-4, 1 - 1e-4))
    wrong = truth.clone()
    wrong[0, 0, 0, 0], wrong[0, 0, 2, 2] = -12.0, 12.0
    assert locate_loss(truth, presence, offsets).item() < 1e-3
    # two of the 18 cells wrong by a logit of 12 each: BCE mean 2 * softplus(12) / 18
    expected = 2 * math.log1p(math.exp(12.0)) / 18
    assert locate_loss(wrong, presence, offsets).item() == pytest.approx(expected, rel=1e-3)


def test_top_cell_hits_counts_only_samples_with_an_object():
    presence = torch.zeros((3, 2, 2))
    presence[0, 0, 1] = 1  # predicted right
    presence[1, 1, 1] = 1  # predicted wrong
    prediction = torch.zeros((3, 3, 2, 2))
    prediction[0, 0, 0, 1] = prediction[1, 0, 0, 0] = prediction[2, 0, 1, 0] = 5.0
    assert top_cell_hits(prediction, presence) == (1, 2)


def test_a_locator_learns_where_a_bright_square_is():
    # an encoder-free check that loss and targets agree: a 1x1 conv on a map that marks the
    # square's cell (channel 0) and its offset (channels 1-2) fits presence and offsets
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    locator = Locator(3)
    optimizer = torch.optim.Adam(locator.parameters(), lr=0.05)
    for _ in range(300):
        boxes = [torch.tensor([[x, y, x + 8, y + 8]]) for x, y in (torch.rand((16, 2), generator=gen) * 88).tolist()]
        presence, offsets = locate_targets(boxes, (96, 96), (4, 4))
        features = torch.cat([presence[:, None] * 4 - 2, offsets * presence[:, None]], dim=1)
        loss = locate_loss(locator(features), presence, offsets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert top_cell_hits(locator(features), presence) == (16, 16)
    assert loss.item() < 0.1


class _Scenes(torch.utils.data.Dataset):
    def __init__(self, count=6, hw=(48, 64)):
        gen = torch.Generator().manual_seed(3)
        self.images = torch.randint(0, 256, (count, *hw, 3), generator=gen, dtype=torch.uint8)
        self.boxes = [torch.tensor([[4.0 + i, 6.0, 20.0 + i, 18.0]]) for i in range(count)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": i % 2, "boxes": self.boxes[i],
                "distractors": torch.tensor([[40.0, 30.0, 50.0, 44.0]])}


def test_glance_set_holds_glances_labels_and_mirrors_boxes_with_the_image():
    scenes = _Scenes()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    glance_set = GlanceSet(scenes, 16, mean, std)
    assert len(glance_set) == 6 and glance_set.image_hw == (48, 64)
    indices, flips = torch.tensor([4, 1]), torch.tensor([True, False])
    glances, labels, objects = glance_set.batch(indices, flips)
    assert labels.tolist() == [0, 1]
    # oracle: the glance of the mirrored image, and the boxes mirrored by hand
    mirrored = ops.glance(scenes.images[4].flip(1)[None], 16, mean=mean, std=std)[0]
    assert torch.allclose(glances[0], mirrored, atol=2e-3)  # stored as float16
    assert torch.allclose(glances[1], ops.glance(scenes.images[1][None], 16, mean=mean, std=std)[0], atol=2e-3)
    assert objects[0].tolist() == [[64 - 24.0, 6.0, 64 - 8.0, 18.0], [64 - 50.0, 30.0, 64 - 40.0, 44.0]]
    assert objects[1].tolist() == [[5.0, 6.0, 21.0, 18.0], [40.0, 30.0, 50.0, 44.0]]
    assert not math.isnan(float(glances.sum()))


@pytest.mark.parametrize("box", [[100.0, 30.0, 120.0, 52.0], [0.0, 0.0, 9.0, 7.0], [150.0, 100.0, 160.0, 120.0],
                                 [70.0, 50.0, 90.0, 71.0]])
def test_object_window_holds_every_crop_that_contains_the_box(box):
    # oracle: every crop position of the whole image whose window contains the box, enumerated,
    # and the pixels sliced from the image directly
    image = torch.randint(0, 256, (120, 160, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    side = 48
    window, window_box = object_region(image, {"boxes": torch.tensor([box])}, side)
    assert window.shape == (side, side, 3)
    shift = torch.tensor(box) - window_box[0]  # (left, top, left, top) of the window in the image
    left, top = int(shift[0]), int(shift[1])
    assert shift.tolist() == [left, top, left, top]
    x0, y0, x1, y1 = box
    for size in (12, 24):
        for crop_top in range(0, 120 - size + 1):
            for crop_left in range(0, 160 - size + 1):
                if not (crop_left <= x0 and crop_left + size >= x1 and crop_top <= y0 and crop_top + size >= y1):
                    continue
                r, c = crop_top - top, crop_left - left
                assert 0 <= r <= side - size and 0 <= c <= side - size, (size, crop_top, crop_left)
                assert torch.equal(window[r:r + size, c:c + size], image[crop_top:crop_top + size,
                                                                         crop_left:crop_left + size])
    # training_crops on the window draw exactly such crops
    crops = training_crops([window_box], 24, (side, side), torch.Generator().manual_seed(0), object_crops=True)
    cx0, cy0, cx1, cy1 = (crops[0, 1:] + shift).tolist()
    assert cx0 <= x0 and cy0 <= y0 and cx1 >= x1 and cy1 >= y1


def test_object_window_prefers_the_annotated_box_then_a_distractor_then_the_centre():
    image = torch.arange(100 * 120 * 3, dtype=torch.int64).reshape(100, 120, 3).to(torch.uint8)
    target, decoys = torch.tensor([[10.0, 10.0, 20.0, 20.0]]), torch.tensor([[80.0, 60.0, 90.0, 70.0],
                                                                             [5.0, 5.0, 9.0, 9.0]])
    _, box = object_region(image, {"boxes": target, "distractors": decoys}, 40)
    assert box.tolist() == [[10.0, 10.0, 20.0, 20.0]]  # window clamped at the top-left corner
    window, box = object_region(image, {"boxes": torch.zeros((0, 4)), "distractors": decoys}, 40)
    assert box.tolist() == [[15.0, 15.0, 25.0, 25.0]] and torch.equal(window, image[45:85, 65:105])
    window, box = object_region(image, {"boxes": torch.zeros((0, 4))}, 40)
    assert box.shape == (0, 4) and torch.equal(window, image[30:70, 40:80])
    window, _ = object_region(image, {"boxes": target}, 400)  # larger than the image: the image's short side
    assert window.shape == (100, 100, 3)


def test_glance_set_keeps_an_encoders_maps_instead_of_glances():
    scenes = _Scenes()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    seen = []

    def encode(glances):  # a stand-in encoder: the glance pooled 4x4, and a record of its batches
        seen.append(len(glances))
        return torch.nn.functional.avg_pool2d(glances, 4)

    glance_set = GlanceSet(scenes, 16, mean, std, region=24, encode=encode, encode_batch=4)
    assert glance_set.glances is None and seen == [4, 2]
    assert glance_set.maps.shape == (6, 3, 4, 4) and glance_set.maps.dtype == torch.float16
    for i in range(6):  # oracle: the encoder on the image's own glance
        expected = torch.nn.functional.avg_pool2d(ops.glance(scenes.images[i][None], 16, mean=mean, std=std), 4)[0]
        torch.testing.assert_close(glance_set.maps[i].float(), expected, atol=2e-3, rtol=0)
    assert glance_set.regions.shape == (6, 24, 24, 3) and len(glance_set.objects) == 6


def test_glance_set_keeps_object_windows_only_when_asked():
    scenes = _Scenes()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    with pytest.raises(ValueError, match="no regions"):
        GlanceSet(scenes, 16, mean, std).region_batch(torch.tensor([0]))
    glance_set = GlanceSet(scenes, 16, mean, std, region=24)
    windows, labels, boxes = glance_set.region_batch(torch.tensor([5, 2]))
    assert windows.dtype == torch.uint8 and windows.shape == (2, 24, 24, 3) and labels.tolist() == [1, 0]
    for i, (window, box) in enumerate(zip(windows, boxes)):
        expected_window, expected_box = object_region(scenes.images[[5, 2][i]], scenes[[5, 2][i]], 24)
        assert torch.equal(window, expected_window) and torch.equal(box, expected_box)


@pytest.mark.parametrize("hidden, kernel", [(0, 1), (5, 1), (8, 1), (5, 3)])
def test_seeded_policy_scores_cells_with_the_locator(hidden, kernel):
    from msgf.models.heads import LocationPolicy
    from msgf.train.locate import seed_policy

    torch.manual_seed(0)
    locator = Locator(6, hidden=hidden, kernel=kernel)
    policy = LocationPolicy(6, 3, 2, channels=8, hidden=8, head="spatial", patch_sizes=(32, 48), kernel=kernel)
    fmap = torch.randn(5, 6, 3, 3)
    seed_policy(policy, locator, sharpness=2.5)
    with torch.no_grad():
        mean, _, _ = policy(fmap, torch.zeros(5, dtype=torch.int64), torch.ones(5, dtype=torch.int64),
                            policy.initial_hidden(5, fmap))
        # independent of the policy's code: softmax of the sharpened presence logits, times
        # each cell's centre as the locator places it, ((i, j) + sigmoid(offsets)) / 3
        where = locator(fmap)
        weights = torch.softmax(2.5 * where[:, 0].flatten(1), 1).view(5, 3, 3)
        grid = torch.arange(3.0)
        rows = (grid[:, None] + torch.sigmoid(where[:, 1])) / 3
        cols = (grid[None, :] + torch.sigmoid(where[:, 2])) / 3
        expected = torch.stack([(weights * rows).sum((1, 2)), (weights * cols).sum((1, 2))], 1)
    torch.testing.assert_close(mean, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="spatial"):
        seed_policy(LocationPolicy(6, 3, 2, channels=8, hidden=8), locator)
    with pytest.raises(ValueError, match="cannot carry"):
        seed_policy(LocationPolicy(6, 3, 2, channels=4, hidden=8, head="spatial", patch_sizes=(32, 48)), locator)
    with pytest.raises(ValueError, match="cannot carry"):  # another kernel than the locator's
        seed_policy(LocationPolicy(6, 3, 2, channels=8, hidden=8, head="spatial", patch_sizes=(32, 48),
                                   kernel=4 - kernel), locator)


def test_locator_kernel_needs_a_hidden_layer_and_an_odd_side():
    with pytest.raises(ValueError, match="kernel"):
        Locator(6, hidden=0, kernel=3)
    with pytest.raises(ValueError, match="kernel"):
        Locator(6, hidden=4, kernel=2)


def test_fit_locator_learns_where_a_bright_square_is_from_fixed_maps():
    from msgf.train.locate import fit_locator

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    boxes = [torch.tensor([[x, y, x + 8, y + 8]]) for x, y in (torch.rand((64, 2), generator=gen) * 88).tolist()]
    boxes[3] = torch.zeros((0, 4))  # an image without an object
    presence, offsets = locate_targets(boxes, (96, 96), (4, 4))
    maps = torch.cat([presence[:, None] * 4 - 2, offsets * presence[:, None]], dim=1)
    locator = Locator(3, hidden=6)
    losses = fit_locator(locator, maps, boxes, (96, 96), epochs=60, generator=gen, lr=0.02, batch_size=16)
    assert len(losses) == 60 and losses[-1] < 0.2 * losses[0]
    assert top_cell_hits(locator(maps), presence) == (63, 63)
    with pytest.raises(ValueError, match="one entry per image"):
        fit_locator(locator, maps[:3], boxes, (96, 96), epochs=1, generator=gen)
    with pytest.raises(ValueError, match="hidden"):
        Locator(3, hidden=-1)


def test_fit_locator_trains_a_trunk_with_it_on_the_trunks_inputs():
    # The maps are the trunk's inputs (8x8, the 4x4 signal upsampled); the trunk (a stride-2
    # conv and a BatchNorm, frozen as f_G is) halves them, so the targets are on its 4x4 grid.
    # The trunk learns with the locator, its BatchNorm keeps its statistics (eval), and it is
    # frozen and contiguous again afterwards.
    import copy

    from torch import nn

    from msgf.train.locate import fit_locator

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    boxes = [torch.tensor([[x, y, x + 8, y + 8]]) for x, y in (torch.rand((64, 2), generator=gen) * 88).tolist()]
    presence, offsets = locate_targets(boxes, (96, 96), (4, 4))
    signal = torch.cat([presence[:, None] * 4 - 2, offsets * presence[:, None]], dim=1)
    inputs = signal.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    trunk = nn.Sequential(nn.Conv2d(3, 3, 2, stride=2), nn.BatchNorm2d(3)).requires_grad_(False)
    trunk[1].running_mean.fill_(0.1)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    held = copy.deepcopy(trunk)
    with torch.no_grad():
        pooled = trunk.eval()(inputs).mean((2, 3))
    locator = Locator(3, hidden=6)
    losses = fit_locator(locator, inputs, boxes, (96, 96), epochs=60, generator=gen, lr=0.02, batch_size=16,
                         trunk=trunk, trunk_lr=0.02)
    assert losses[-1] < 0.2 * losses[0]
    with torch.no_grad():
        assert top_cell_hits(locator(trunk.eval()(inputs)), presence) == (64, 64)
    after = trunk.state_dict()
    assert not torch.equal(after["0.weight"], before["0.weight"])
    for name in ("1.running_mean", "1.running_var"):
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in trunk.parameters())
    assert trunk[0].weight.is_contiguous()
    # `pooled` holds the trunk's spatial mean near where it was: it drifts less than when free
    fit_locator(Locator(3, hidden=6), inputs, boxes, (96, 96), epochs=60, generator=torch.Generator().manual_seed(1),
                lr=0.02, batch_size=16, trunk=held, trunk_lr=0.02, pooled=pooled, pooled_weight=10.0)
    with torch.no_grad():
        drift_free = (trunk(inputs).mean((2, 3)) - pooled).norm(dim=1).mean()
        drift_held = (held(inputs).mean((2, 3)) - pooled).norm(dim=1).mean()
    assert drift_held < 0.5 * drift_free
    with pytest.raises(ValueError, match="pooled"):
        fit_locator(locator, inputs, boxes, (96, 96), epochs=1, generator=gen, pooled=pooled)
