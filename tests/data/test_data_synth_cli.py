import numpy as np
import pytest
from PIL import Image

from msgf.cli import main
from msgf.data import open_dataset
from msgf.data.synthsigns import CLASSES, render_scene


def test_msgf_data_synth_writes_jpeg_and_a_manifest_matching_the_generator(tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path), "--split", "val", "--num", "5", "--size", "96x128",
                 "--seed", "4", "--no-progress"]) == 0
    ds = open_dataset(str(tmp_path / "val.csv"))
    assert ds.classes == CLASSES and len(ds) == 5
    for i in range(5):
        scene, item = render_scene(i, "val", 4, (96, 128)), ds[i]
        assert item["label"] == scene.label
        assert item["boxes"].shape[0] == (scene.box is not None)
        if scene.box is not None:
            np.testing.assert_allclose(item["boxes"][0].numpy(), scene.box, atol=0.01)
        jpeg = np.asarray(Image.open(tmp_path / "val" / f"{i:06d}.jpg")).astype(float)
        assert np.abs(jpeg - scene.image).mean() < 6  # JPEG q95 of the same pixels


def test_make_synthsigns_script_is_the_same_command(tmp_path, run_script):
    run_script("datasets/make_synthsigns.py", "--out", str(tmp_path), "--split", "test", "--num", "2",
               "--size", "64x64", "--no-progress")
    assert (tmp_path / "test.csv").read_text().count("\n") == 3


def test_bad_size_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match="size"):
        main(["data", "synth", "--out", str(tmp_path), "--num", "1", "--size", "big"])


def test_no_scenes_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--out", str(tmp_path), "--num", "0"])
    assert exit_info.value.code == 2
    assert "--num: expected a positive integer, got '0'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
