"""The onnxruntime path imports neither torch nor torchvision (nor timm), checked in a fresh
interpreter: the predictor on arrays and a TIFF, and `msgf infer --runtime onnx`."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import msgf.deploy
    from msgf.cli import main
    from msgf.data.regions import open_image
    from msgf.deploy import OnnxPredictor

    directory, tiff, image, out = sys.argv[1:5]
    predictor = OnnxPredictor(directory, threads=1)
    results = predictor.predict([np.full((100, 130, 3), 90, np.uint8)])
    results += predictor.predict_regions([open_image(tiff)])
    args = ["infer", "--runtime", "onnx", directory, image, tiff, "--out", out, "--no-progress", "--workers", "1",
            "--batch", "1"]
    status = main(args)
    with open(out) as handle:
        first = handle.readline()
    with open(out, "w") as handle:  # as if killed after the first batch
        handle.write(first)
    status += main(args + ["--resume"])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm"))
    print(json.dumps({"status": status, "loaded": loaded, "results": len(results)}))
""")


def test_onnx_inference_never_imports_torch(gru, photos, tmp_path):
    import tifffile
    from PIL import Image

    tiff, image = tmp_path / "a.tif", tmp_path / "b.png"
    tifffile.imwrite(tiff, np.ascontiguousarray(np.tile(photos["cat"], (3, 3, 1))), tile=(64, 64),
                     photometric="rgb")
    Image.fromarray(photos["rocket"]).save(image)
    out = tmp_path / "lines.jsonl"
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(gru["dir"]), str(tiff), str(image), str(out)],
                         capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"status": 0, "loaded": [], "results": 2}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["file"] for line in lines[:-1]] == [str(image), str(tiff)] and lines[-1]["summary"]["images"] == 2
