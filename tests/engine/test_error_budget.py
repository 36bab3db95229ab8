"""The error budget against plain per-sample loops over the engine's own outputs."""
import pytest
import torch

import msgf.engine
from msgf import ops
from msgf.engine import Thresholds
from msgf.engine.error_budget import centred_locations, error_budget, format_markdown, wilson_interval


@pytest.fixture(scope="module")
def scenes(model, images):
    """Boxes and labels chosen from the model's own episodes, so that every bucket fills: boxes
    under pi's first 32 px patch (covered) or in a corner (never covered), labels equal to the
    prediction at the covering step (read) or not, and images without a box."""
    run = msgf.engine.anytime(model, images, 32)
    first_patch = ops.focus_boxes(run.locs[:, 1], 32, images.shape[1:3])[:, 1:]
    boxes, labels = [], []
    for n in range(len(images)):
        if n % 2:  # no object: its label is the glance's prediction or another class
            boxes.append(torch.zeros((0, 4)))
            labels.append(int(run.pred[n, 0]) if n % 4 == 1 else (int(run.pred[n, -1]) + 1) % 5)
            continue
        if n % 4 == 2:  # in the corner, away from every patch
            boxes.append(torch.tensor([[1.0, 1.0, 5.0, 5.0]]))
            labels.append((int(run.pred[n, -1]) + 1) % 5)
            continue
        cx, cy = ((first_patch[n, 0] + first_patch[n, 2]) / 2).item(), ((first_patch[n, 1] + first_patch[n, 3]) / 2).item()
        boxes.append(torch.tensor([[cx - 3, cy - 3, cx + 3, cy + 3]]))
        labels.append(int(run.pred[n, 1]) if n % 8 == 0 else (int(run.pred[n, 1]) + 1) % 5)
    return boxes, torch.tensor(labels)


def _inside(patch, box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return patch[0] <= cx < patch[2] and patch[1] <= cy < patch[3]


def _expected(labels, boxes, preds, patches):
    """Buckets by a plain loop: preds (N, T) per step, patches[n][t] the focus patch of step t+2."""
    buckets = dict.fromkeys(("no_object_called_object", "not_covered", "covered_misread", "read_then_lost"), 0)
    covered = read = with_box = 0
    for n, label in enumerate(labels.tolist()):
        final_ok = preds[n][-1] == label
        if not len(boxes[n]):
            buckets["no_object_called_object"] += not final_ok
            continue
        with_box += 1
        first = next((t for t, p in enumerate(patches[n]) if p is not None and _inside(p, boxes[n][0].tolist())), None)
        if first is None:
            buckets["not_covered"] += not final_ok
            continue
        covered += 1
        read_ok = preds[n][first + 1] == label
        read += read_ok
        if not final_ok:
            buckets["read_then_lost" if read_ok else "covered_misread"] += 1
    return buckets, covered / with_box, (read / covered if covered else None)


def test_every_step_matches_a_plain_loop_over_anytime(model, images, scenes):
    boxes, labels = scenes
    batch = {"images": images, "labels": labels, "boxes": boxes}
    report = error_budget(model, [batch])
    hw = images.shape[1:3]
    filled = set()
    for size in model.config.patch_sizes:
        run = msgf.engine.anytime(model, images, size)
        patches = [[ops.focus_boxes(run.locs[n, t][None], size, hw)[0, 1:].tolist() for t in range(1, model.config.T)]
                   for n in range(len(images))]
        buckets, coverage, read = _expected(labels, boxes, run.pred.tolist(), patches)
        entry = report["sizes"][str(size)]
        assert entry["errors"] == buckets
        filled |= {name for name, count in buckets.items() if count}
        assert entry["coverage"] == pytest.approx(coverage)
        assert entry["read_when_covered"] == (None if read is None else pytest.approx(read))
        assert entry["accuracy"] == pytest.approx(float((run.pred[:, -1] == labels).float().mean()))
        # the measured bound: covering every object can only change the samples never covered
        assert entry["accuracy_if_all_covered"] is not None
        assert entry["accuracy_if_covered_read"] == pytest.approx(entry["accuracy"] + buckets["covered_misread"] / 9)
    assert filled == set(buckets), "the fixture must put errors in every bucket"


def test_at_thresholds_matches_a_plain_loop_over_predict(model, images, scenes):
    boxes, labels = scenes
    thresholds = Thresholds([[0.3, 0.6], [0.35, 0.5]], budget=1e9)  # a mix of exits and both sizes
    report = error_budget(model, [{"images": images, "labels": labels, "boxes": boxes}], thresholds=thresholds,
                          sizes=[])
    out = msgf.engine.predict(model, images, thresholds)
    hw = images.shape[1:3]
    patches = [[ops.focus_boxes(out.locs[n, t][None], int(out.sizes[n, t]), hw)[0, 1:].tolist()
                if out.sizes[n, t] > 0 else None for t in range(1, model.config.T)] for n in range(len(images))]
    preds = [[int(p) for p in row[:int(e)]] + [int(f)] * (model.config.T - int(e))
             for row, e, f in zip(out.step_pred, out.exit_step, out.pred)]  # the exit prediction stays
    buckets, coverage, read = _expected(labels, boxes, preds, patches)
    entry = report["thresholds"]
    assert entry["errors"] == buckets
    assert entry["coverage"] == pytest.approx(coverage)
    assert 0 < coverage < 1
    assert entry["avg_macs"] == pytest.approx(float(out.macs.double().mean()))
    assert entry["budget"] == 1e9
    assert "thresholds for 1000M" in format_markdown(report)


@pytest.mark.parametrize("side", [16, 32, 48])
def test_centred_locations_put_the_point_inside_the_patch(side):
    gen = torch.Generator().manual_seed(side)
    hw = (70, 90)
    points = torch.rand((200, 2), generator=gen) * torch.tensor([hw[1] - 1.0, hw[0] - 1.0])
    patches = ops.focus_boxes(centred_locations(points, side, hw), side, hw)[:, 1:]
    assert bool(((points[:, 0] >= patches[:, 0]) & (points[:, 0] < patches[:, 2])
                 & (points[:, 1] >= patches[:, 1]) & (points[:, 1] < patches[:, 3])).all())
    # and centred where the image leaves room: the centre is within one pixel of the point
    room = ((points[:, 0] > side / 2 + 1) & (points[:, 0] < hw[1] - side / 2 - 1)
            & (points[:, 1] > side / 2 + 1) & (points[:, 1] < hw[0] - side / 2 - 1))
    centre = (patches[:, :2] + patches[:, 2:]) / 2
    assert bool(((centre - points).abs()[room] <= 1.0).all())


def test_wilson_interval_against_known_values():
    low, high = wilson_interval(40, 50)
    assert low == pytest.approx(0.6696, abs=1e-3) and high == pytest.approx(0.8876, abs=1e-3)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and 0 < high < 0.35


def test_sizes_outside_the_model_are_refused(model, images, scenes):
    boxes, labels = scenes
    with pytest.raises(ValueError, match="sizes"):
        error_budget(model, [{"images": images, "labels": labels, "boxes": boxes}], sizes=[77])
