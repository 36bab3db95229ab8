"""The manifest reader and the glance filter's argument checks: no export needed."""
import json

import numpy as np
import pytest

from msgf.deploy.manifest import FORMAT, FORMAT_VERSION, ManifestError, eta_of, read_manifest
from msgf.deploy.resize import axis_weights, banded, glance_weights


def write(directory, **values):
    directory.mkdir(exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps(values))
    return directory


def test_a_damaged_or_foreign_manifest_is_refused_by_name(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path / "x")
    with pytest.raises(ManifestError, match="format marker"):
        read_manifest(write(tmp_path / "y", format="something-else"))
    with pytest.raises(ManifestError, match="version"):
        read_manifest(write(tmp_path / "z", format=FORMAT, format_version=FORMAT_VERSION + 1))
    with pytest.raises(ManifestError, match="missing"):
        read_manifest(write(tmp_path / "w", format=FORMAT, format_version=FORMAT_VERSION))
    graphs = {"glance": "glance.onnx", "glance_encoder": "g.onnx", "policy": "p.onnx", "crop": {},
              "focus_encoder": {}, "classify": []}
    with pytest.raises(ManifestError, match="glance.onnx"):
        read_manifest(write(tmp_path / "v", format=FORMAT, format_version=FORMAT_VERSION, config={"T": 2},
                            step_macs=[], thresholds=[], graphs=graphs, shapes={}))
    with pytest.raises(TypeError, match="directory"):
        read_manifest(3)


def test_eta_reads_infinities_and_refuses_nan():
    assert eta_of({"eta": [["inf", "-inf"], [0.5, 1]], "rule": ">="}).tolist() == [[float("inf"), float("-inf")],
                                                                                  [0.5, 1.0]]
    with pytest.raises(ManifestError, match="NaN"):
        eta_of({"eta": [["nan"]]})


def test_filter_sizes_are_checked():
    with pytest.raises(ValueError, match="in_size"):
        axis_weights(0, 4)
    with pytest.raises(ValueError, match="out_size"):
        axis_weights(4, True)
    rows, cols = glance_weights((30, 50), (8, 8))
    assert rows.shape == (8, 30) and cols.shape == (50, 8)
    assert abs(rows.sum(1) - 1).max() < 1e-6 and abs(cols.sum(0) - 1).max() < 1e-6


def test_the_banded_filter_is_the_dense_one():
    for in_size, out_size in [(960, 96), (1280, 96), (64, 64), (30, 64), (97, 32), (1000, 7), (5, 64)]:
        index, weights = banded(in_size, out_size)
        dense = np.zeros((weights.shape[0] * weights.shape[1], in_size), dtype=np.float32)
        for group in range(index.shape[0]):
            dense[group * weights.shape[1]:(group + 1) * weights.shape[1], index[group]] = weights[group]
        assert np.array_equal(dense[:out_size], axis_weights(in_size, out_size))
        assert not dense[out_size:].any()
        assert index.min() >= 0 and index.max() < in_size
