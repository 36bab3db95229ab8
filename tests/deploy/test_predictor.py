"""OnnxPredictor against the PyTorch engine (msgf.engine.predict, and Predictor.predict_regions
for TIFFs): the same class and exit step, confidences within 1e-4, focus boxes within 1 px."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import msgf  # noqa: E402
from msgf import ops  # noqa: E402
from msgf.data.regions import ArrayImage, open_image  # noqa: E402
from msgf.deploy import ManifestError, OnnxPredictor  # noqa: E402
from msgf.engine import predict  # noqa: E402


def rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def engine_result(model, image, thresholds):
    """The oracle: msgf.engine.predict on one decoded image, boxes by msgf.ops.focus_boxes."""
    out = predict(model, torch.from_numpy(rgb(image))[None], thresholds)
    t = int(out.exit_step[0])
    boxes = [ops.focus_boxes(out.locs[0, s:s + 1].clamp(0, 1), int(out.sizes[0, s]), image.shape[:2])[0, 1:]
             .int().tolist() for s in range(1, t)]
    return out, boxes


def at_threshold_edge(eta, step_conf, step, tol=1e-4) -> bool:
    """Whether the confidence that routed step `step` lies within `tol` of one of its thresholds."""
    return step < len(eta) + 1 and bool(np.abs(np.asarray(eta[step - 1]) - step_conf).min() < tol)


def compare(model, thresholds, images, results):
    """Per-image agreement; raises on a disagreement the threshold edge does not explain."""
    agree, routes, worst_conf, worst_box = 0, set(), 0.0, 0
    for image, result in zip(images, results):
        out, boxes = engine_result(model, image, thresholds)
        routes.add(tuple(out.sizes[0].tolist()))
        steps = min(result.exit_step, int(out.exit_step[0]))
        # every step both ran agrees to 1e-4, whatever happens after
        for t in range(steps):
            worst_conf = max(worst_conf, abs(result.steps[t].confidence - float(out.step_conf[0, t])))
        same = result.pred == int(out.pred[0]) and result.exit_step == int(out.exit_step[0]) and \
            [p.size for p in result.patches] == out.sizes[0, 1:result.exit_step].tolist()
        if not same:  # a route may only part where a confidence sits on a threshold
            diverged = next(t for t in range(1, steps + 1)
                            if t == steps or result.patches[t - 1].size != int(out.sizes[0, t]))
            assert at_threshold_edge(thresholds.eta, float(out.step_conf[0, diverged - 1]), diverged), \
                f"routes part at step {diverged} away from any threshold"
            continue
        agree += 1
        assert result.macs == int(out.macs[0])
        assert result.class_name == model.config.class_names[result.pred]
        for patch, box in zip(result.patches, boxes):
            worst_box = max(worst_box, int(np.abs(np.asarray(patch.box) - np.asarray(box)).max()))
    return agree, routes, worst_conf, worst_box


def test_agrees_with_the_engine_on_photos_and_scenes(exported, photos, scenes):
    model, thresholds = exported["model"], exported["thresholds"]
    predictor = OnnxPredictor(exported["dir"], budget=thresholds.budget, threads=1)
    images = [*photos.values(), *scenes]
    results = [predictor.predict([image])[0] for image in images]
    agree, routes, worst_conf, worst_box = compare(model, thresholds, images, results)
    assert agree / len(images) >= 0.995 or agree >= len(images) - 1
    assert worst_conf < 1e-4 and worst_box <= 1
    # the comparison only means something if the images take different routes
    assert len(routes) >= 3, routes


def test_a_mixed_batch_gives_each_image_its_own_result(lite, photos, scenes):
    predictor = OnnxPredictor(lite["dir"], threads=1)
    images = [*photos.values(), *scenes[:4]]
    together = predictor.predict(images)
    for image, result in zip(images, together):
        (alone,) = predictor.predict([image])
        assert (result.pred, result.exit_step, result.macs, result.image_hw) == \
               (alone.pred, alone.exit_step, alone.macs, alone.image_hw)
        assert [p.box for p in result.patches] == [p.box for p in alone.patches]
        assert result.confidence == pytest.approx(alone.confidence, abs=1e-5)


def test_tiff_regions_agree_with_the_torch_predictor(exported, photos, tmp_path):
    """A tiled TIFF read as regions (the glance from read_glance, patches by read_region), as
    Predictor.predict_regions reads it."""
    import tifffile
    from PIL import Image

    pixels = np.asarray(Image.fromarray(photos["astronaut"]).resize((800, 600), Image.BILINEAR))
    path = tmp_path / "astronaut.tif"
    tifffile.imwrite(path, pixels, tile=(128, 128), photometric="rgb", compression="zlib")
    torch_predictor = msgf.Predictor(exported["model"], thresholds=exported["thresholds"])
    onnx_predictor = OnnxPredictor(exported["dir"], thresholds=exported["thresholds"], threads=1)
    for sizes in ([0, 0], [1, 1], [0, 1]):  # forced routes: inf at the size to take, -inf elsewhere
        eta = np.full((2, 2), -np.inf)
        eta[0, sizes[0]] = eta[1, sizes[1]] = np.inf
        forced = msgf.engine.Thresholds(eta)
        (expected,) = msgf.Predictor(exported["model"], thresholds=forced).predict_regions([open_image(path)])
        (got,) = OnnxPredictor(exported["dir"], thresholds=forced, threads=1).predict_regions([open_image(path)])
        assert [s.pred for s in got.steps] == [s.pred for s in expected.steps]
        assert np.abs(np.array([s.confidence for s in got.steps]) -
                      np.array([s.confidence for s in expected.steps])).max() < 1e-4
        assert max(np.abs(np.subtract(a.box, b.box)).max() for a, b in zip(got.patches, expected.patches)) <= 1
    (expected,) = torch_predictor.predict_regions([open_image(path)])
    (got,) = onnx_predictor.predict_regions([open_image(path)])
    assert (got.pred, got.exit_step, got.image_hw) == (expected.pred, expected.exit_step, (600, 800))


def test_stream_and_array_paths(lite, photos, tmp_path):
    from PIL import Image

    predictor = OnnxPredictor(lite["dir"], threads=1)
    paths = []
    for name, pixels in photos.items():
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(pixels).save(paths[-1])
    streamed = [result for _, result in predictor.predict_stream(paths, batch_size=2, workers=1)]
    direct = predictor.predict_regions([ArrayImage(rgb(p)) for p in photos.values()])
    assert [r.to_dict() for r in streamed] == [r.to_dict() for r in direct]


def test_thresholds_from_the_report_of_search_thresholds(lite, search_report, tmp_path):
    """A JSON path or mapping in any layout msgf.threshold_sets reads; --budget picks a budget from a report."""
    path, budgets = search_report
    report = json.loads(path.read_text())
    for budget, row in zip(budgets, report["results"]):
        expected = np.array([[float(v) for v in r] for r in row["thresholds"]])
        for thresholds in (path, str(path), report):
            assert np.array_equal(OnnxPredictor(lite["dir"], thresholds=thresholds, budget=budget).eta, expected)
    alone = tmp_path / "alone.json"  # one set, as files were before reports could be read
    alone.write_text(json.dumps(report["results"][0]))
    assert np.array_equal(OnnxPredictor(lite["dir"], thresholds=alone).eta, OnnxPredictor(
        lite["dir"], thresholds=path, budget=budgets[0]).eta)
    with pytest.raises(ValueError, match="report.json holds 2 threshold sets"):
        OnnxPredictor(lite["dir"], thresholds=path)


def test_bad_arguments_are_named(lite, tmp_path):
    with pytest.raises(ValueError, match=r"no thresholds for budget 100.00M MACs in the thresholds given "
                                         r"\(budgets there: 300.00M\)"):
        OnnxPredictor(lite["dir"], budget=1e8, thresholds=lite["thresholds"])  # one set, of another budget
    with pytest.raises(ValueError, match=r"no thresholds for budget 1.23M MACs in the export \(budgets there: "
                                         r"300.00M\); search it on the checkpoint"):
        OnnxPredictor(lite["dir"], budget=1.2345e6)
    with pytest.raises(ValueError, match="threads"):
        OnnxPredictor(lite["dir"], threads=0)
    with pytest.raises(ValueError, match="eta has shape"):
        OnnxPredictor(lite["dir"], thresholds={"eta": [[0.5]]})
    with pytest.raises(ManifestError, match="no manifest.json"):
        OnnxPredictor(tmp_path)
    with pytest.raises(FileNotFoundError, match="directory"):
        OnnxPredictor(tmp_path / "missing")
    predictor = OnnxPredictor(lite["dir"], threads=1)
    with pytest.raises(TypeError, match="images"):
        predictor.predict(torch.zeros((1, 64, 64, 3), dtype=torch.uint8))
    with pytest.raises(ValueError, match="smaller than the model's largest patch"):
        predictor.predict([np.zeros((40, 60, 3), dtype=np.uint8)])
    with pytest.raises(TypeError, match="readers"):
        predictor.predict_regions([object()])
