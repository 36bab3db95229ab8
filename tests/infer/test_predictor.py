import threading

import numpy as np
import pytest
import torch

import msgf
from msgf import ops
from msgf.data import decode_image
from msgf.data.regions import ArrayImage, open_image
from msgf.engine import Thresholds, predict


def in_memory(model, pixels, thresholds):
    """The oracle: msgf.engine.predict on the decoded image, boxes by msgf.ops.focus_boxes."""
    out = predict(model, torch.from_numpy(pixels)[None], thresholds)
    t = int(out.exit_step[0])
    boxes = [ops.focus_boxes(out.locs[0, s:s + 1].clamp(0, 1), int(out.sizes[0, s]), pixels.shape[:2])[0, 1:]
             .int().tolist() for s in range(1, t)]
    return out, boxes


def test_region_reader_gives_the_in_memory_results_exactly(model, thresholds, photo_files):
    predictor = msgf.Predictor(model, thresholds=thresholds)
    routes = set()
    for path in photo_files.values():
        pixels = decode_image(path)
        out, boxes = in_memory(predictor.model, pixels, thresholds)  # the predictor's (inference) copy
        (result,) = predictor.predict_regions([open_image(path)])
        assert result.pred == int(out.pred[0]) and result.exit_step == int(out.exit_step[0])
        assert result.confidence == float(out.conf[0])  # bit-identical, not merely close
        assert result.macs == int(out.macs[0])
        assert [list(p.box) for p in result.patches] == boxes
        assert [p.size for p in result.patches] == out.sizes[0, 1:result.exit_step].tolist()
        assert [s.confidence for s in result.steps] == out.step_conf[0, :result.exit_step].tolist()
        routes.add(tuple(out.sizes[0].tolist()))
    # the comparison only means something if the photos take different routes
    assert len(routes) >= 3, routes


def test_a_batch_of_equal_sizes_matches_the_batched_engine(model, thresholds, photos):
    batch = np.stack([photos["astronaut"], photos["camera"][:, :, None].repeat(3, 2)])
    predictor = msgf.Predictor(model, thresholds=thresholds)
    out = predict(predictor.model, torch.from_numpy(batch), thresholds)
    for results in (predictor.predict(batch), predictor.predict_regions([ArrayImage(a) for a in batch])):
        assert [r.pred for r in results] == out.pred.tolist()
        assert [r.confidence for r in results] == out.conf.tolist()
        assert [r.exit_step for r in results] == out.exit_step.tolist()


def test_the_inference_copy_decides_as_the_model_it_was_made_from(model, thresholds, photo_files):
    """The Predictor runs a copy with BatchNorm folded and channels-last weights
    (msgf.models.inference): the same classes, exit steps, sizes and boxes as the engine on the
    model as trained, and confidences equal up to float rounding."""
    predictor = msgf.Predictor(model, thresholds=thresholds)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the caller's model is untouched
    routes = set()
    for path in photo_files.values():
        pixels = decode_image(path)
        out, boxes = in_memory(model, pixels, thresholds)
        (result,) = predictor.predict(pixels[None])
        assert (result.pred, result.exit_step, result.macs) == (int(out.pred[0]), int(out.exit_step[0]),
                                                                 int(out.macs[0]))
        assert [list(p.box) for p in result.patches] == boxes
        assert [s.confidence for s in result.steps] == pytest.approx(out.step_conf[0, :result.exit_step].tolist(),
                                                                     abs=1e-5)
        routes.add(tuple(out.sizes[0].tolist()))
    assert len(routes) >= 3, routes


def test_mixed_sizes_in_one_call_match_each_image_alone(model, thresholds, photos):
    predictor = msgf.Predictor(model, thresholds=thresholds)
    arrays = list(photos.values())
    together = predictor.predict(arrays)
    assert len({a.shape[:2] for a in arrays}) >= 3
    for array, result in zip(arrays, together):
        (alone,) = predictor.predict([array])
        assert (result.pred, result.exit_step, result.macs, result.image_hw) == \
               (alone.pred, alone.exit_step, alone.macs, alone.image_hw)
        assert [p.box for p in result.patches] == [p.box for p in alone.patches]
        # other batch shapes may round matrix products differently in the last bit
        assert result.confidence == pytest.approx(alone.confidence, rel=1e-5)


def test_tiff_region_reads_match_the_step_api_on_the_whole_image(model, small_tiff, forced, step_oracle):
    path, _ = small_tiff
    predictor = msgf.Predictor(model, thresholds=forced)
    (result,) = predictor.predict_regions([open_image(path)])
    steps, boxes = step_oracle(predictor.model, path, [32, 48])
    assert [(s.pred, s.confidence) for s in result.steps] == steps
    assert [list(p.box) for p in result.patches] == boxes
    assert [p.size for p in result.patches] == [32, 48] and result.image_hw == (600, 800)


def test_a_spatial_policy_places_a_tiff_patch_by_the_full_image_not_the_glance_read(small_tiff, forced):
    """The spatial head puts the patch centre at its chosen cell's centre, as a fraction of the
    image: with the image size unknown (0) its location *is* that fraction, an oracle that does
    not depend on how the size reaches the policy. A TIFF's glance comes from a pyramid level
    of 64 px, which must not stand in for the 600x800 image."""
    from msgf import ops

    torch.manual_seed(0)
    model = msgf.build_model("resnet18", num_classes=4, glance_size=32, patch_sizes=[32, 48], T=3,
                             policy_head="spatial").eval()
    path, _ = small_tiff
    reader = open_image(path)
    (result,) = msgf.Predictor(model, thresholds=forced).predict_regions([reader])
    with torch.inference_mode():
        state = model.glance(torch.from_numpy(reader.read_glance(32, 32))[None])
        state.policy_hidden[:, -2:] = 0.0  # size unknown: the location is the cell's image fraction
        centre = model.propose(state, 32).mean[0]
    hw = torch.tensor([600.0, 800.0])
    expected = ops.focus_boxes(((centre * hw - 16) / (hw - 32)).clamp(0, 1)[None], 32, (600, 800))[0, 1:]
    assert list(result.patches[0].box) == [int(v) for v in expected.tolist()]
    reader.close()


def test_threads_share_one_predictor(model, thresholds, photos):
    predictor = msgf.Predictor(model, thresholds=thresholds)
    arrays = list(photos.values())
    expected = [predictor.predict([a])[0] for a in arrays]
    got, errors = {}, []

    def work(k: int) -> None:
        try:
            for round_ in range(3):
                i = (k + round_) % len(arrays)
                got[(k, round_)] = (i, predictor.predict([arrays[i]])[0])
        except Exception as error:  # surfaced below: a thread's exception would vanish otherwise
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(got) == 12
    for i, result in got.values():
        assert result == expected[i]


def test_thresholds_from_the_checkpoint_budget_or_a_file(ckpt, thresholds, tmp_path, photos):
    by_budget = msgf.Predictor(ckpt, budget="200M")
    only = msgf.Predictor(ckpt)  # the checkpoint stores exactly one set
    path = tmp_path / "t.json"
    path.write_text(thresholds.to_json())
    from_file = msgf.Predictor(ckpt, thresholds=path)
    for predictor in (by_budget, only, from_file):
        assert predictor.thresholds.to_dict()["eta"] == thresholds.to_dict()["eta"]
    assert by_budget.predict([photos["cat"]]) == from_file.predict([photos["cat"]])
    with pytest.raises(ValueError, match="no thresholds for budget"):
        msgf.Predictor(ckpt, budget="1G")


def test_bad_arguments_name_themselves(model, thresholds, ckpt, photos):
    with pytest.raises(TypeError, match="ckpt"):
        msgf.Predictor(42, thresholds=thresholds)
    with pytest.raises(ValueError, match=r"no thresholds for budget 300.00M MACs in the thresholds given "
                                         r"\(budgets there: 200.00M\)"):
        msgf.Predictor(ckpt, budget="300M", thresholds=thresholds)  # a set of its own, for another budget
    with pytest.raises(TypeError, match="thresholds"):
        msgf.Predictor(ckpt, thresholds=[[0.5, 0.5]])
    with pytest.raises(TypeError, match="budget"):
        msgf.Predictor(ckpt, budget=[2e8])
    with pytest.raises(ValueError, match="thresholds eta has shape"):
        msgf.Predictor(model, thresholds=Thresholds([[0.5]]))
    predictor = msgf.Predictor(model, thresholds=thresholds)
    with pytest.raises(TypeError, match="images"):
        predictor.predict("photo.jpg")
    with pytest.raises(TypeError, match=r"images\[0\]"):
        predictor.predict([photos["cat"].astype(np.float32)])
    with pytest.raises(TypeError, match="readers"):
        predictor.predict_regions([object()])
    with pytest.raises(ValueError, match="readers"):
        predictor.predict_regions([])
    with pytest.raises(ValueError, match="smaller than the model's largest patch"):
        predictor.predict_regions([ArrayImage(photos["cat"][:40])])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_predictor_on_the_device_reads_regions_as_the_host_does(ckpt, photo_files, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # see tests/engine: TF32 moves confidences
    host, device = msgf.Predictor(ckpt), msgf.Predictor(ckpt, device="cuda")
    assert next(device.model.parameters()).is_cuda
    readers = [open_image(path) for path in photo_files.values()]
    for want, got in zip(host.predict_regions(readers), device.predict_regions(readers)):
        assert (got.pred, got.exit_step, got.macs) == (want.pred, want.exit_step, want.macs)
        assert [p.box for p in got.patches] == [p.box for p in want.patches]
        assert got.confidence == pytest.approx(want.confidence, rel=1e-4, abs=1e-5)


def test_memory_goes_back_after_large_calls_only(model, thresholds, monkeypatch):
    """Giving freed memory back costs ~2 ms a call: a one-scene call keeps it for the next."""
    import msgf.infer.predictor as predictor_module

    calls = []
    monkeypatch.setattr(predictor_module, "_release_memory", lambda: calls.append(1))
    predictor = msgf.Predictor(model, thresholds=thresholds)
    predictor.predict(np.zeros((2, 64, 80, 3), dtype=np.uint8))
    assert calls == []
    side = int((predictor_module.RELEASE_AFTER_BYTES / 6) ** 0.5) + 1  # two images just over the line
    predictor.predict(np.zeros((2, side, side, 3), dtype=np.uint8))
    assert calls == [1]
