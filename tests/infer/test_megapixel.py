import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from msgf.models.inference import inference_copy

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so that its memory is its own. The warm-up on a small TIFF pays
# for every import, the model and its first forward passes. Loading the weights peaks above
# what the process then holds, which would hide the image in ru_maxrss, so the kernel's peak
# (VmHWM) is reset before the large image (writing 5 to clear_refs, Linux >= 4.0).
CHILD = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
import msgf
from msgf.data.regions import open_image
def status(key):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(dict(line.split(":", 1) for line in lines)[key].split()[0]) * 1024
ckpt, thresholds, warm, big = sys.argv[1:]
predictor = msgf.Predictor(ckpt, thresholds=thresholds)
predictor.predict_regions([open_image(warm)])
before = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
(result,) = predictor.predict_regions([open_image(big)])
print(json.dumps({"before": before, "after": status("VmHWM"), "result": result.to_dict()}))
"""


def test_a_3000px_pyramidal_tiff_is_classified_without_reading_it_whole(
        tmp_path, photos, small_tiff, ckpt, model, forced, step_oracle, write_tiff):
    side = 3000
    pixels = np.asarray(Image.fromarray(photos["coffee"]).resize((side, side), Image.BILINEAR))
    big = tmp_path / "big.tif"
    levels = write_tiff(big, pixels, tile=256)
    assert levels[0] == side and len(levels) >= 4
    thresholds = tmp_path / "forced.json"
    thresholds.write_text(forced.to_json())
    del pixels
    done = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(thresholds), str(small_tiff[0]), str(big)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    # Decoding the image whole would add its 27 MB; region reads add a few tiles of 256 px. (The
    # absolute peak is torch's and the model's: benchmarks/megapixel.py reports it per size.)
    raw = side * side * 3
    assert report["after"] - report["before"] < raw / 2, report
    steps, boxes = step_oracle(inference_copy(model), big, [32, 48])  # what msgf.Predictor runs
    result = report["result"]
    assert [(s["class_index"], s["confidence"]) for s in result["steps"]] == steps
    assert [p["box"] for p in result["patches"]] == boxes and result["image_size"] == [side, side]
