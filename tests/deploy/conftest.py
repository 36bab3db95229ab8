"""Fixtures of the ONNX deployment tests: two small models exported once per session, with
thresholds that mix exit steps and patch sizes on the test images.

- "lite": ImageNet-pretrained EfficientNet-Lite0 encoders (offline, msgf[pretrained]), the
  "max" classifier, the "spatial" policy head and patches zoomed in for f_L (cpu-demo's form);
- "gru": an untrained resnet18 with the GRU classifier and the paper's "sigmoid" head.
Untrained mobilenet_v3_small would be cheaper, but its features barely differ between images
(every photo took the same route), which would make the agreement tests say little.
"""
import numpy as np
import pytest
import torch

CLASSES = ["astronaut", "coffee", "cat", "rocket"]
BUDGET = 3e8  # the budget the test thresholds are stored under (a label, not a measured cost)


@pytest.fixture(scope="module", autouse=True)
def _tiny_models_run_single_threaded(single_torch_thread):
    """See tests/conftest.py: single_torch_thread."""


@pytest.fixture(scope="session")
def scenes():
    """Built-in test scenes (msgf.data.synthsigns), small."""
    from msgf.data.synthsigns import render_scene

    return [render_scene(k, "test", image_size=(120, 160)).image for k in range(10)]


def rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def spread_thresholds(model, images, budget: float = BUDGET):
    """Per step, thresholds at terciles of the confidences, so that the images exit at every step
    and continue with either patch size (K = 2)."""
    from msgf.engine import Thresholds, anytime

    sizes = model.config.patch_sizes
    levels = [[] for _ in range(model.config.T - 1)]
    for image in images:
        out = anytime(model, torch.from_numpy(rgb(image))[None], sizes[-1])
        for t in range(model.config.T - 1):
            levels[t].append(float(out.conf[0, t]))
    rows = [np.quantile(np.asarray(conf, dtype=np.float64), [2 / 3, 1 / 3]).tolist() for conf in levels]
    return Thresholds(rows, budget=budget, sizes=sizes)


def _build(kind: str):
    import msgf

    torch.manual_seed(0)
    if kind == "lite":  # the cpu-demo preset's form: f_G ends at pi's stride-16 map, f_C "max",
        # patches zoomed in for f_L (the crop graphs resize 32 -> 48 and 48 -> 64 px)
        return msgf.build_model("efficientnet_lite0", 4, 64, (32, 48), 3, classifier="max", pretrained=True,
                                patch_input_sizes=(48, 64),
                                policy_head="spatial", policy_kernel=3, policy_selection="argmax",
                                policy_inhibition=100.0, policy_inhibition_radius=1, map_stride=16,
                                glance_to_map=True, class_names=CLASSES).eval()
    return msgf.build_model("resnet18", 4, 32, (32, 48), 3, classifier="gru", classifier_hidden=64,
                            policy_hidden=64, class_names=CLASSES).eval()


def _exported(kind: str, photos, scenes, tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import msgf
    from msgf.deploy import export_model

    model = _build(kind)
    model.exit_thresholds = [spread_thresholds(model, [*photos.values(), *scenes])]
    root = tmp_path_factory.mktemp(f"export-{kind}")
    ckpt = root / "model.pt"
    msgf.save_checkpoint(model, ckpt)
    if kind == "gru":  # through the command line, which the other export does not exercise
        from msgf.cli import main
        from msgf.deploy import read_manifest

        assert main(["export", str(ckpt), "--out", str(root / "onnx")]) == 0
        manifest = read_manifest(root / "onnx")
    else:
        manifest = export_model(ckpt, root / "onnx")
    return {"model": model, "ckpt": ckpt, "dir": root / "onnx", "manifest": manifest,
            "thresholds": model.exit_thresholds[0]}


@pytest.fixture(scope="session")
def lite(photos, scenes, tmp_path_factory):
    return _exported("lite", photos, scenes, tmp_path_factory)


@pytest.fixture(scope="session")
def gru(photos, scenes, tmp_path_factory):
    return _exported("gru", photos, scenes, tmp_path_factory)


@pytest.fixture(scope="session", params=["lite", "gru"])
def exported(request):
    return request.getfixturevalue(request.param)
