"""The exported graphs against their oracles: msgf.ops (the crop op and the glance) and the
model's own modules. Each graph is run alone in onnxruntime."""
import json

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from msgf import ops  # noqa: E402
from msgf.deploy.resize import glance_inputs  # noqa: E402


def session(directory, name):
    return ort.InferenceSession(str(directory / name), providers=["CPUExecutionProvider"])


def graph_names(manifest):
    graphs = manifest["graphs"]
    return [graphs["glance"], graphs["glance_encoder"], graphs["policy"], *graphs["crop"].values(),
            *graphs["focus_encoder"].values(), *graphs["classify"]]


def test_every_graph_passes_the_checker_and_the_manifest_holds_the_model(exported):
    model, directory, manifest = exported["model"], exported["dir"], exported["manifest"]
    for name in graph_names(manifest):
        onnx.checker.check_model(onnx.load(directory / name), full_check=True)
    cfg = model.config
    assert manifest == json.loads((directory / "manifest.json").read_text())
    assert manifest["config"] == cfg.to_dict()
    assert manifest["normalisation"]["mean"] == list(cfg.mean) and manifest["normalisation"]["std"] == list(cfg.std)
    assert manifest["macs_table"] == {str(k): v for k, v in model.macs_table().items()}
    assert manifest["step_macs"][0] == [model.step_macs(1)] * cfg.num_sizes
    assert manifest["step_macs"][1:] == [[model.step_macs(t, s) for s in cfg.patch_sizes] for t in range(2, cfg.T + 1)]
    assert manifest["thresholds"] == [t.to_dict() for t in model.exit_thresholds]
    assert manifest["source"]["bytes"] == exported["ckpt"].stat().st_size
    assert sorted(manifest["graphs"]["crop"]) == sorted(str(s) for s in cfg.patch_sizes)


@pytest.mark.parametrize("hw", [(120, 160), (97, 131), (64, 64), (40, 50), (333, 250), (960, 1280)])
def test_the_glance_graph_is_our_antialiased_glance(lite, hw):
    """Oracle: msgf.ops.glance (the compiled kernel), with the model's normalisation."""
    cfg = lite["model"].config
    images = torch.randint(0, 256, (2, *hw, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(hw[0]))
    expected = ops.glance(images, cfg.glance_size, mean=cfg.mean, std=cfg.std).numpy()
    filters = glance_inputs(hw, (cfg.glance_size, cfg.glance_size))
    (got,) = session(lite["dir"], "glance.onnx").run(None, {"images": images.numpy(), **filters})
    # values in [-1, 1] (mean = std = 0.5): float32 sums in another order, ~1e-3 of one 8-bit level
    assert np.abs(got - expected).max() < 2e-5


def test_onnx_resize_antialias_is_not_our_glance():
    """Why the glance is two MatMuls: onnxruntime's Resize(antialias=1) is another filter. If this
    starts failing, Resize has become ours and the glance graph could use it."""
    from onnx import TensorProto, helper

    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", antialias=1)
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
                                                 helper.make_tensor_value_info("sizes", TensorProto.INT64, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    resize = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    images = torch.randint(0, 256, (1, 240, 320, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    planar = images.permute(0, 3, 1, 2).float().numpy() / 255
    (got,) = resize.run(None, {"x": planar, "sizes": np.array([1, 3, 48, 48], dtype=np.int64)})
    assert np.abs(got - ops.glance(images, 48).numpy()).max() > 1e-3


@pytest.mark.parametrize("boxes_per_call", [1, 5, 17])
def test_the_crop_graph_is_our_crop_op(lite, boxes_per_call):
    """Oracle: msgf.ops.crop_resize on msgf.ops.focus_boxes, any number of boxes (the graph was
    traced with one), several images of a batch; and on fractional boxes inside the image,
    where RoiAlign interpolates."""
    cfg = lite["model"].config
    gen = torch.Generator().manual_seed(boxes_per_call)
    images = torch.randint(0, 256, (3, 90, 130, 3), dtype=torch.uint8, generator=gen)
    assert cfg.focus_input_sizes != cfg.patch_sizes  # the patches are resized up for f_L
    for side, input_side in zip(cfg.patch_sizes, cfg.focus_input_sizes):
        crop = session(lite["dir"], f"crop_{side}.onnx")
        locs = torch.rand((boxes_per_call, 2), generator=gen)
        batch = torch.randint(0, 3, (boxes_per_call,), generator=gen)
        boxes = ops.focus_boxes(locs, side, (90, 130), batch_index=batch)
        expected = ops.crop_resize(images, boxes, input_side, mean=cfg.mean, std=cfg.std).patches[0].numpy()
        (got,) = crop.run(None, {"images": images.numpy(), "boxes": boxes.numpy()})
        assert got.shape == (boxes_per_call, 3, input_side, input_side)
        # the op sums the sample coordinates in RoiAlign's order: the taps and their weights
        # agree, the weighted sums round apart (~1e-5 of one 8-bit level)
        assert np.abs(got - expected).max() < 1e-6
        fractional = boxes.clone()
        fractional[:, 1:3] += torch.rand((boxes_per_call, 2), generator=gen) * 5
        fractional[:, 3:] = fractional[:, 1:3] + torch.rand((boxes_per_call, 1), generator=gen) * 20 + side - 10
        fractional[:, 3] = fractional[:, 3].clamp(max=129)
        fractional[:, 4] = fractional[:, 4].clamp(max=89)
        expected = ops.crop_resize(images, fractional, input_side, mean=cfg.mean, std=cfg.std).patches[0].numpy()
        (got,) = crop.run(None, {"images": images.numpy(), "boxes": fractional.numpy()})
        # the sample coordinates are computed in float32 in another order: ~1e-3 of one 8-bit level
        assert np.abs(got - expected).max() < 5e-5


def test_the_step_graphs_are_the_model_modules(exported):
    model, directory = exported["model"], exported["dir"]
    cfg = model.config
    gen = torch.Generator().manual_seed(3)
    tol = dict(atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        # float images are taken as given and normalised by the glance (a resize from g to g is a copy)
        images = torch.rand((5, 3, cfg.glance_size, cfg.glance_size), generator=gen)
        state = model.glance(images)  # the oracle: the model's own glance step
        glance = (images - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(cfg.std)[:, None, None]
        features, fmap = session(directory, "glance_encoder.onnx").run(None, {"glance": glance.numpy()})
        np.testing.assert_allclose(features, state.features.numpy(), **tol)
        np.testing.assert_allclose(fmap, state.feature_map.numpy(), **tol)
        logits, conf, memory = session(directory, "classify_1.onnx").run(None, {"features": state.features.numpy()})
        np.testing.assert_allclose(logits, state.logits.numpy(), **tol)
        np.testing.assert_allclose(conf, state.confidence.numpy(), atol=1e-6)
        np.testing.assert_allclose(memory, state.classifier_memory.numpy(), **tol)
        sizes = torch.tensor([cfg.patch_sizes[k % cfg.num_sizes] for k in range(5)])
        proposal = model.propose(state, sizes)
        location, hidden = session(directory, "policy.onnx").run(None, {
            "feature_map": state.feature_map.numpy(), "last_size_index": state.size_index.numpy(),
            "next_size_index": proposal.next_size_index.numpy(), "state": state.policy_hidden.numpy()})
        np.testing.assert_allclose(location, proposal.mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(hidden, proposal.hidden.numpy(), **tol)
        for side, input_side in zip(cfg.patch_sizes, cfg.focus_input_sizes):
            patches = torch.randn((4, 3, input_side, input_side), generator=gen)
            fmap_t, feat_t = model.local_encoder(patches)
            features, fmap = session(directory, f"focus_encoder_{side}.onnx").run(None, {"patches": patches.numpy()})
            np.testing.assert_allclose(features, feat_t.numpy(), **tol)
            assert fmap.shape[-1] == model.map_side
        for step in range(2, cfg.T + 1):  # later steps with a memory of the right width
            memory = torch.randn((4, (step - 1) * model.global_encoder.feature_dim if cfg.classifier == "fc"
                                  else state.classifier_memory.shape[1]), generator=gen)
            feats = torch.randn((4, model.local_encoder.feature_dim), generator=gen)  # f_L's, after the glance
            expected_logits, expected_memory = model.classifier(feats, memory, step)
            logits, conf, memory_out = session(directory, f"classify_{step}.onnx").run(
                None, {"features": feats.numpy(), "memory": memory.numpy()})
            np.testing.assert_allclose(logits, expected_logits.numpy(), **tol)
            np.testing.assert_allclose(memory_out, expected_memory.numpy(), **tol)
            np.testing.assert_allclose(conf, torch.softmax(expected_logits, -1).amax(-1).numpy(), atol=1e-6)
