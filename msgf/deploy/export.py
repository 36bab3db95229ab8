"""`export_model`: a checkpoint as ONNX graphs plus a JSON manifest, for `OnnxPredictor`.

The graphs are the engine's step functions, each static in everything but the batch:

- glance.onnx       uint8 images (N, H, W, C) and the banded filter -> normalised glance (N, C, g, g)
- crop_<P>.onnx     uint8 images (M, H, W, C) and boxes (B, 5) -> normalised patches (B, C, P, P)
- glance_encoder.onnx   glance -> pooled feature (N, D), feature map (N, Cm, S, S)
- focus_encoder_<P>.onnx  patches -> the same, through f_L
- classify_<t>.onnx     f_C at step t: feature (and memory, t >= 2) -> logits, confidence, memory
- policy.onnx       pi: feature map, last and next size index, policy state -> location, state

Why the inputs are graphs of their own rather than the first nodes of the encoder graphs:
`msgf::crop_resize` takes one output size per box, so a traced call fixes the number of boxes,
while the engine's batch shrinks at every step. The crop graph is traced with one box through
torch's exporter, our op translated by `crop_resize_translation` (RoiAlign), and its box
dimension is then made symbolic, which is sound because none of its nodes depends on it
(checked below); the encoders, whose reshapes do depend on the batch, are traced with a symbolic
batch. Keeping the inputs apart also lets the runtime feed small canvases of patches read from
region readers instead of whole images. The glance's antialiased resize has no faithful ONNX
operator (msgf.deploy.resize) and is built by hand (msgf.deploy.translation.glance_graph).

The classifier is split from the encoders because its memory grows with t in the "fc" cascade
and its head differs per step; pi is separate because the next patch size (one of its inputs)
is chosen from the confidence that f_C has just produced.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from msgf import __version__
from msgf.atomic import atomic_write
from msgf.deploy.manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME
from msgf.deploy.translation import OPSET, crop_resize_translation, glance_graph

# Node types the crop graph may contain: all of them act row by row on the boxes, so the
# number of boxes the trace saw does not matter.
_CROP_NODES = {"Slice", "Squeeze", "Cast", "Transpose", "RoiAlign", "Mul", "Add", "Constant"}


class _Encoder(nn.Module):
    """f_G or f_L as the engine uses it: pooled feature and the map resized to the common side S
    (as GFNet's bilinear map resize, align_corners=False)."""

    def __init__(self, encoder: nn.Module, map_side: int):
        super().__init__()
        self.encoder, self.map_side = encoder, map_side

    def forward(self, x):
        fmap, features = self.encoder(x)
        if fmap.shape[-2:] != (self.map_side, self.map_side):
            fmap = nn.functional.interpolate(fmap, size=(self.map_side, self.map_side), mode="bilinear",
                                             align_corners=False)
        return features, fmap


class _Classify(nn.Module):
    """f_C at step t, and the confidence the exit rule reads (max softmax, in float32)."""

    def __init__(self, classifier: nn.Module, step: int):
        super().__init__()
        self.classifier, self.step = classifier, step

    def forward(self, features, memory=None):
        if memory is None:
            memory = self.classifier.initial_memory(features.shape[0], features)
        logits, memory = self.classifier(features, memory, self.step)
        confidence = torch.softmax(logits.float(), dim=-1).amax(dim=-1)
        return logits, confidence, memory


class _Policy(nn.Module):
    """pi's mean location (what inference uses) and its next state; the critic is dropped."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, feature_map, last_size_index, next_size_index, hidden):
        mean, _, hidden = self.policy(feature_map, last_size_index, next_size_index, hidden)
        return mean, hidden


class _Crop(nn.Module):
    def __init__(self, side: int, mean, std):
        super().__init__()
        self.side, self.mean, self.std = side, [float(v) for v in mean], [float(v) for v in std]

    def forward(self, images, boxes):
        (patches,) = torch.ops.msgf.crop_resize(images, boxes, [self.side], [self.side], self.mean, self.std, False,
                                                torch.float32)
        return patches


def export_model(source, out_dir: str | os.PathLike) -> dict:
    """Write `source` (a checkpoint path, or a GFNet in eval mode) to `out_dir` as ONNX graphs
    and `manifest.json`; returns the manifest. Every graph passes `onnx.checker` (full check).
    The manifest is written last, so a directory with one holds a complete export."""
    from msgf.checkpoint import load_checkpoint
    from msgf.models.gfnet import GFNet

    start = time.perf_counter()
    if isinstance(source, GFNet):
        if source.training:
            raise ValueError("source: the model is in training mode; call model.eval() first")
        model, origin = source, None
    elif isinstance(source, (str, os.PathLike)):
        model, origin = load_checkpoint(source, map_location="cpu"), Path(source)
    else:
        raise TypeError(f"source: expected a checkpoint path or a GFNet, got {type(source).__name__}")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir: expected a directory path, got {type(out_dir).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()  # the graphs are traced on the CPU; the caller's model stays put
    cfg = model.config
    graphs = _export_graphs(model, out)
    step_costs = [[model.step_macs(1)] * cfg.num_sizes] + \
        [[model.step_macs(t, s) for s in cfg.patch_sizes] for t in range(2, cfg.T + 1)]
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "msgf_version": __version__, "opset": OPSET,
        "config": cfg.to_dict(),
        "normalisation": {"mean": list(cfg.mean), "std": list(cfg.std), "input": "uint8 RGB (H, W, 3), scaled by 1/255"},
        # step_macs[t - 1][k]: MACs of step t at patch size k (the glance fills row 0), as the engine counts
        "step_macs": step_costs,
        "macs_table": {str(k): v for k, v in model.macs_table().items()},
        "thresholds": [t.to_dict() for t in model.exit_thresholds],
        "shapes": {"policy_state": int(model.policy.state_size()),
                   # the spatial head keeps the glance input's (H, W) in its last two state columns
                   "policy_state_image_size": cfg.policy_head == "spatial"},
        "graphs": graphs,
        "source": _describe_source(origin),
        "export_seconds": None,
    }
    manifest["export_seconds"] = round(time.perf_counter() - start, 3)
    with atomic_write(out / MANIFEST_NAME, "w") as file:
        json.dump(manifest, file, indent=2, allow_nan=False)
        file.write("\n")
    return manifest


def _export_graphs(model, out: Path) -> dict:
    cfg = model.config
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        glance = torch.zeros((2, 3, cfg.glance_size, cfg.glance_size))
        encoder = _Encoder(model.global_encoder, model.map_side)
        features, fmap = encoder(glance)
        graphs = {"glance": _write(out, "glance.onnx", glance_graph(cfg.mean, cfg.std, cfg.glance_size)),
                  "glance_encoder": _trace(out, "glance_encoder.onnx", encoder, (glance,), ["glance"],
                                           ["features", "feature_map"], ({0: batch},)),
                  "crop": {}, "focus_encoder": {}, "classify": []}
        local = _Encoder(model.local_encoder, model.map_side)
        for side, input_side in zip(cfg.patch_sizes, cfg.focus_input_sizes):
            # the crop graph cuts a patch of `side` and resizes it to f_L's input side
            graphs["crop"][str(side)] = _export_crop(out, side, input_side, cfg.mean, cfg.std)
            patches = torch.zeros((2, 3, input_side, input_side))
            graphs["focus_encoder"][str(side)] = _trace(out, f"focus_encoder_{side}.onnx", local, (patches,),
                                                        ["patches"], ["features", "feature_map"], ({0: batch},))
        # f_C reads f_G's feature at step 1 and f_L's after it: they differ in width where f_G
        # ends at pi's map (glance_to_map)
        patch_features, _ = local(patches)
        memory = None
        for step in range(1, cfg.T + 1):
            module = _Classify(model.classifier, step)
            args = (features,) if memory is None else (patch_features, memory)
            names = ["features"] if memory is None else ["features", "memory"]
            graphs["classify"].append(_trace(out, f"classify_{step}.onnx", module, args, names,
                                             ["logits", "confidence", "next_memory"], ({0: batch},) * len(args)))
            _, _, memory = module(*args)
        hidden = model.policy.initial_hidden(2, features, (cfg.glance_size, cfg.glance_size))
        # distinct tensors: the exporter would trace one tensor passed twice as one input used twice
        last, following = torch.tensor([0, 1]), torch.tensor([0, cfg.num_sizes - 1])
        graphs["policy"] = _trace(out, "policy.onnx", _Policy(model.policy), (fmap, last, following, hidden),
                                  ["feature_map", "last_size_index", "next_size_index", "state"], ["location", "next_state"],
                                  ({0: batch},) * 4)
    return graphs


def _trace(out: Path, name: str, module: nn.Module, args, input_names, output_names, dynamic_shapes) -> str:
    with warnings.catch_warnings():
        # every input's batch dimension is the one "batch" Dim: the exporter says so, harmlessly
        warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
        program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=dynamic_shapes, verbose=False)
    return _write(out, name, program.model_proto)


def _export_crop(out: Path, side: int, input_side: int, mean, std) -> str:
    images = torch.zeros((2, side + 3, side + 5, 3), dtype=torch.uint8)
    boxes = torch.tensor([[1.0, 1.0, 2.0, 1.0 + side, 2.0 + side]])
    dims = {0: torch.export.Dim("images"), 1: torch.export.Dim("height"), 2: torch.export.Dim("width")}
    program = torch.onnx.export(
        _Crop(input_side, mean, std).eval(), (images, boxes), dynamo=True, opset_version=OPSET, input_names=["images", "boxes"],
        output_names=["patches"], dynamic_shapes=(dims, None), verbose=False,
        custom_translation_table={torch.ops.msgf.crop_resize.default: crop_resize_translation})
    proto = program.model_proto
    unexpected = sorted({node.op_type for node in proto.graph.node} - _CROP_NODES)
    if unexpected:
        raise RuntimeError(f"crop graph: nodes {unexpected} may depend on the number of boxes; cannot relax it")
    # The trace saw one box; every node acts per box, so the box dimension becomes symbolic.
    for value in (proto.graph.input[1], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "boxes"
    del proto.graph.value_info[:]
    return _write(out, f"crop_{side}.onnx", proto)


def _write(out: Path, name: str, proto: onnx.ModelProto) -> str:
    onnx.checker.check_model(proto, full_check=True)
    with atomic_write(out / name) as file:
        file.write(proto.SerializeToString())
    return name


def _describe_source(path: Path | None) -> dict | None:
    if path is None:
        return None
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return {"checkpoint": path.name, "sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def graph_bytes(out_dir: str | os.PathLike) -> int:
    """Bytes on disk of an export (graphs and manifest)."""
    return int(np.sum([p.stat().st_size for p in Path(out_dir).iterdir() if p.is_file()]))
