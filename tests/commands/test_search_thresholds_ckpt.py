"""`msgf search-thresholds --ckpt`: export, search, store back; checked against the engine.

The thresholds are searched on exported trajectories by numpy code (threshold_search); the
engine then runs them live on the same images with the model. Both must agree on accuracy and
MACs, which ties the export, the search and the early-exit engine together."""
import json

import numpy as np
import pytest
import torch

import msgf
from msgf import data
from msgf.cli import main
from msgf.engine import export_trajectories, predict
from msgf.engine.trajectories import node_macs

DATA = ["--data", "synthsigns", "--image-size", "96x128", "--num-samples", "24"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = msgf.build_model("mobilenet_v3_small", num_classes=4, glance_size=32, patch_sizes=[32, 48], T=3)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    msgf.save_checkpoint(model.eval(), path)
    return path


def validation_batch():
    dataset = data.open_dataset("synthsigns", "val", seed=0, num_samples=24, image_size=(96, 128))
    return data.collate_batch([dataset[i] for i in range(len(dataset))])


def test_search_stores_thresholds_that_the_engine_reproduces(checkpoint, tmp_path, capsys):
    macs = node_macs(msgf.load_checkpoint(checkpoint))
    budget = float(macs[0] + 0.5 * (macs[-1] - macs[0]))
    out = tmp_path / "report.json"
    argv = ["search-thresholds", "--ckpt", str(checkpoint), *DATA, "--budget", str(budget),
            "--test-data", "synthsigns", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    row, = report["results"]
    assert row["validation"]["macs"] <= budget and row["test"] is not None
    cached = sorted(checkpoint.parent.glob("model.val-*.npz"))
    cached_test = sorted(checkpoint.parent.glob("model.test-*.npz"))
    assert len(cached) == 1 and len(cached_test) == 1
    assert (report["trajectories"], report["test"]) == (str(cached[0]), str(cached_test[0]))

    model = msgf.load_checkpoint(checkpoint)
    stored, = model.exit_thresholds
    assert stored.budget == pytest.approx(budget)
    batch = validation_batch()
    live = predict(model, batch["images"], stored)
    assert float((live.pred == batch["labels"]).float().mean()) == pytest.approx(row["validation"]["accuracy"])
    assert float(live.macs.double().mean()) == pytest.approx(row["validation"]["macs"], rel=1e-6)

    capsys.readouterr()
    assert main(argv) == 0  # the second run reuses the exported trajectories
    assert "using cached trajectories" in capsys.readouterr().err
    assert len(msgf.load_checkpoint(checkpoint).exit_thresholds) == 1  # same budget replaced, not added


def test_cached_export_equals_a_direct_export(checkpoint, tmp_path):
    from threshold_search import Trajectories

    full_cost = str(float(node_macs(msgf.load_checkpoint(checkpoint))[-1]))
    assert main(["search-thresholds", "--ckpt", str(checkpoint), *DATA, "--budget", full_cost]) == 0
    cached = Trajectories.load(sorted(checkpoint.parent.glob("model.val-*.npz"))[0])
    batch = validation_batch()
    direct_path = tmp_path / "direct.npz"
    export_trajectories(msgf.load_checkpoint(checkpoint), [batch], direct_path, progress=False)
    direct = Trajectories.load(direct_path)
    assert np.array_equal(cached.pred, direct.pred) and np.allclose(cached.conf, direct.conf, atol=1e-6)


def test_argument_mistakes_are_reported(checkpoint, tmp_path, capsys):
    assert main(["search-thresholds", "--ckpt", str(checkpoint), "--budget", "1G"]) == 2
    # a checkpoint that records no data of its own (not written by msgf train) needs --data
    assert "records no val set to use (it keeps no record of its data" in capsys.readouterr().err
    npz = tmp_path / "x.npz"
    assert main(["search-thresholds", "--trajectories", str(npz), "--data", "synthsigns", "--budget", "1G"]) == 2
    assert "go with --ckpt" in capsys.readouterr().err
    assert main(["search-thresholds", "--ckpt", str(checkpoint), *DATA, "--test", str(npz), "--budget", "1G"]) == 2
    assert "--test-data" in capsys.readouterr().err


def test_trajectories_with_ckpt_store_what_was_searched_on_them(checkpoint, tmp_path, capsys):
    """`make demo`'s step: the thresholds searched on the trajectory files training exported are
    stored into the model those files came from, and the engine then reproduces them."""
    from threshold_search import make_trajectories

    model_file = tmp_path / "model.pt"
    model_file.write_bytes(checkpoint.read_bytes())
    batch, val = validation_batch(), tmp_path / "val.npz"
    export_trajectories(msgf.load_checkpoint(model_file), [batch], val, progress=False)
    macs = node_macs(msgf.load_checkpoint(model_file))
    budget = float(macs[0] + 0.4 * (macs[-1] - macs[0]))
    out = tmp_path / "report.json"
    assert main(["search-thresholds", "--ckpt", str(model_file), "--trajectories", str(val), "--test", str(val),
                 "--budget", str(budget), "--out", str(out)]) == 0
    row, = json.loads(out.read_text())["results"]
    model = msgf.load_checkpoint(model_file)
    stored = model.exit_thresholds[-1]  # added after any the copied checkpoint held
    assert stored.budget == pytest.approx(budget) and stored.to_dict()["eta"] == row["thresholds"]
    live = predict(model, batch["images"], stored)
    assert float((live.pred == batch["labels"]).float().mean()) == pytest.approx(row["validation"]["accuracy"])
    assert float(live.macs.double().mean()) == pytest.approx(row["validation"]["macs"], rel=1e-6)

    before = model_file.read_bytes()
    for sizes in ([32, 64], [32, 48]):  # another model's files: other sizes, or the same sizes at other costs
        other = tmp_path / f"other-{sizes[1]}.npz"
        make_trajectories(24, 3, sizes, seed=0).save(other)
        assert main(["search-thresholds", "--ckpt", str(model_file), "--trajectories", str(other),
                     "--budget", str(budget)]) == 2
        assert "was not exported from" in capsys.readouterr().err
    assert model_file.read_bytes() == before  # refused before anything was stored
    assert main(["search-thresholds", "--ckpt", str(model_file), "--trajectories", str(val), "--data", "synthsigns",
                 "--budget", str(budget)]) == 2
    assert "go with --ckpt alone" in capsys.readouterr().err
    assert main(["search-thresholds", "--budget", str(budget)]) == 2
    assert "give --trajectories VAL.npz, --ckpt CKPT, or both" in capsys.readouterr().err
