"""ONNX for msgf's input operator: the translation of `msgf::crop_resize` for torch's exporter,
and the glance graph.

The focus crop: design.md's box mapping (u = x0 + (j + 0.5) * (x1 - x0) / w - 0.5, taps read the
image, not the cut box) is `RoiAlign(mode="avg", sampling_ratio=1,
coordinate_transformation_mode="half_pixel")`, as it is `torchvision.ops.roi_align(aligned=True,
sampling_ratio=1)`, for boxes inside the image, which focus boxes always are (tests/deploy
compares it with the op). The normalisation follows as one multiply-add per channel, folded as
the kernel folds it (x * scale + shift, computed in float64 and rounded once).

The glance: `Resize(antialias=1)` is not our filter (msgf.deploy.resize), so the glance graph is
built here by hand: per axis, the filter's windows gathered and multiplied by their weights (the
banded filter, an input computed by the runtime for each image size), then the same multiply-add.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18


def affine(mean, std, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """(x / unit - mean) / std as x * scale + shift: (1, C, 1, 1) float32 each, as msgf.ops folds it."""
    scale = np.array([1.0 / (unit * s) for s in std], dtype=np.float64).astype(np.float32)
    shift = np.array([-m / s for m, s in zip(mean, std)], dtype=np.float64).astype(np.float32)
    return scale.reshape(1, -1, 1, 1), shift.reshape(1, -1, 1, 1)


def crop_resize_translation(images, boxes, out_heights, out_widths, mean, std, antialias, out_dtype):
    """onnxscript translation of `torch.ops.msgf.crop_resize.default` (custom_translation_table).

    Only what focus crops use: one output size for all boxes, no antialiasing, float32 out.
    Images uint8 (N, H, W, C) or float32 (N, C, H, W); boxes (B, 5) (batch_index, x0, y0, x1, y1).
    """
    import onnx_ir as ir
    from onnxscript import opset18 as op

    sizes = set(zip(out_heights, out_widths))
    if antialias or len(sizes) != 1:
        raise ValueError("msgf::crop_resize exports with one output size and antialias=False only (the glance's "
                         "antialiased resize is msgf.deploy.translation.glance_graph)")
    if out_dtype != ir.DataType.FLOAT:
        raise ValueError(f"msgf::crop_resize exports with out_dtype float32 only, got {out_dtype}")
    ((height, width),) = sizes
    uint8 = images.dtype == ir.DataType.UINT8
    scale, shift = affine(mean, std, 255.0 if uint8 else 1.0)
    planar = op.Transpose(op.Cast(images, to=TensorProto.FLOAT), perm=[0, 3, 1, 2]) if uint8 else images
    batch_index = op.Cast(op.Squeeze(op.Slice(boxes, [0], [1], [1]), [1]), to=TensorProto.INT64)
    rois = op.Slice(boxes, [1], [5], [1])
    patches = op.RoiAlign(planar, rois, batch_index, mode="avg", output_height=int(height), output_width=int(width),
                          sampling_ratio=1, spatial_scale=1.0, coordinate_transformation_mode="half_pixel")
    scaled = op.Mul(patches, op.Constant(value=numpy_helper.from_array(scale, "scale")))
    return [op.Add(scaled, op.Constant(value=numpy_helper.from_array(shift, "shift")))]


def glance_graph(mean, std, glance_size: int) -> onnx.ModelProto:
    """images uint8 (N, H, W, C) and the banded filter (msgf.deploy.resize.glance_inputs) ->
    glance (N, C, g, g), normalised. Rows first, on the gathered uint8 windows of the
    channels-last image, so no full-size float copy or transpose of the image is made."""
    channels = len(mean)
    scale, shift = affine(mean, std, 255.0)

    def const(name, values):
        return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)

    nodes = [
        # rows: (N, G, L, W, C) windows -> (N, G, L, W*C) -> (N, G, block, W*C) -> (N, g, W, C)
        helper.make_node("Gather", ["images", "row_index"], ["row_windows"], axis=1),
        helper.make_node("Cast", ["row_windows"], ["row_values"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["row_values", "keep3_flatten"], ["row_flat"]),
        helper.make_node("MatMul", ["row_weights", "row_flat"], ["row_blocks"]),
        helper.make_node("Shape", ["images"], ["image_shape"]),
        helper.make_node("Slice", ["image_shape", "zero", "one"], ["batch"]),
        helper.make_node("Slice", ["image_shape", "two", "four"], ["width_channels"]),
        helper.make_node("Concat", ["batch", "minus_one", "width_channels"], ["tall_shape"], axis=0),
        helper.make_node("Reshape", ["row_blocks", "tall_shape"], ["tall_padded"]),
        helper.make_node("Slice", ["tall_padded", "zero", "glance_side", "one"], ["tall"]),
        # columns: (N, g, G, L, C) windows -> (N, G, C, g, L) @ (G, 1, L, block) -> (N, C, g, g)
        helper.make_node("Gather", ["tall", "col_index"], ["col_windows"], axis=2),
        helper.make_node("Transpose", ["col_windows"], ["col_values"], perm=[0, 2, 4, 1, 3]),
        helper.make_node("MatMul", ["col_values", "col_weights"], ["col_blocks"]),
        helper.make_node("Transpose", ["col_blocks"], ["planar_blocks"], perm=[0, 2, 3, 1, 4]),
        helper.make_node("Reshape", ["planar_blocks", "keep3_flatten"], ["planar_padded"]),
        helper.make_node("Slice", ["planar_padded", "zero", "glance_side", "three"], ["resized"]),
        helper.make_node("Mul", ["resized", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["glance"]),
    ]
    float_input = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "msgf_glance",
        inputs=[helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", "height", "width", channels]),
                helper.make_tensor_value_info("row_index", TensorProto.INT64, ["row_groups", "row_window"]),
                helper.make_tensor_value_info("row_weights", float_input, ["row_groups", "block", "row_window"]),
                helper.make_tensor_value_info("col_index", TensorProto.INT64, ["col_groups", "col_window"]),
                helper.make_tensor_value_info("col_weights", float_input, ["col_groups", 1, "col_window", "block"])],
        outputs=[helper.make_tensor_value_info("glance", float_input, ["batch", channels, glance_size, glance_size])],
        initializer=[numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift"),
                     const("keep3_flatten", [0, 0, 0, -1]), const("minus_one", [-1]), const("zero", [0]),
                     const("one", [1]), const("two", [2]), const("three", [3]), const("four", [4]),
                     const("glance_side", [glance_size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="msgf")
    model.ir_version = 8  # onnxruntime releases of the last years read IR 8 with opset 18
    return model
