"""ONNX deployment (issue 17): agreement with the PyTorch engine, throughput, peak RSS, export.

One run, both runtimes side by side, at the same thresholds:

- agreement: OnnxPredictor against msgf.engine.predict, image by image, on built-in test
  scenes and scikit-image photographs: the same class and exit step, confidences within 1e-4,
  focus boxes within 1 px; every disagreement listed with its distance to the nearest threshold;
- throughput: images/s of onnxruntime (OnnxPredictor) and of PyTorch (Predictor) on decoded
  960x1280 scenes, batch 1 and 32, 2 threads each;
- peak RSS of `msgf infer --runtime onnx` (and, for reference, of the torch runtime) on one tiled
  20000x20000 TIFF and on 1000 960x1280 JPEGs, each a fresh process (getrusage);
- export time and bytes on disk against the checkpoint's.

Models: a smoke-trained checkpoint (trained here as benchmarks/infer_scale.py trains it, or
--ckpt), and ImageNet-pretrained EfficientNet-Lite0 encoders with untrained heads (agreement
only; the heads are random, so its "classes" mean nothing, but its features are real).

    python benchmarks/deploy.py                          # full run: do it on an idle machine
    python benchmarks/deploy.py --quick --workdir /tmp/d # tiny inputs: checks the script runs
    python benchmarks/deploy.py --ckpt runs/base/model.ckpt --parts throughput,rss   # what issue 29 tracks

Each throughput row records the 1-minute load average around it; the memory table has the
floors of the torch runtime next to it: `import torch` alone, and torch with msgf and the
checkpoint loaded.

Writes benchmarks/results/deploy.json and .md (--quick: deploy-quick.*).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from infer_scale import MEASURE, make_checkpoint, make_jpegs, make_tiffs  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PARTS = ("agreement", "throughput", "rss")
PHOTOS = ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "clock",
          "hubble_deep_field", "immunohistochemistry", "retina", "grass", "gravel", "brick", "logo", "colorwheel",
          "cell", "checkerboard"]


def photos(min_side: int) -> dict[str, np.ndarray]:
    """scikit-image's bundled photographs as uint8 RGB, those at least `min_side` px on the short side."""
    from skimage import data

    out = {}
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        image = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
        if min(image.shape[:2]) >= min_side:
            out[name] = np.ascontiguousarray(image.astype(np.uint8))
    return out


def scenes(count: int, size: tuple[int, int], seed: int = 3) -> list[np.ndarray]:
    from msgf.data.synthsigns import render_scene

    return [render_scene(k, "test", seed=seed, image_size=size).image for k in range(count)]


def spread_thresholds(model, images):
    """Terciles of each step's confidence (anytime, largest patch): exits at every step, both sizes."""
    import torch

    from msgf.engine import Thresholds, anytime

    levels = [[] for _ in range(model.config.T - 1)]
    for image in images:
        out = anytime(model, torch.from_numpy(image)[None], model.config.patch_sizes[-1])
        for t in range(model.config.T - 1):
            levels[t].append(float(out.conf[0, t]))
    k = model.config.num_sizes
    rows = [np.quantile(levels[t], np.linspace(2 / 3, 1 / 3, k)).tolist() for t in range(model.config.T - 1)]
    return Thresholds(rows, sizes=model.config.patch_sizes)


def agreement(model, directory: Path, thresholds, images: dict[str, np.ndarray]) -> dict:
    """Image by image: the same class, exit step and patch sizes; the largest confidence gap over
    the steps both took, apart for images whose focus boxes all agree to the pixel and those
    where one box moved by a pixel (its location times (H - P) or (W - P) sits at an integer,
    where floor() goes either way: the patches then differ, and so do the later confidences)."""
    import torch

    from msgf import ops
    from msgf.deploy import OnnxPredictor
    from msgf.engine import predict

    predictor = OnnxPredictor(directory, thresholds=thresholds, threads=2)
    same, disagreements, routes, shifted = 0, [], set(), []
    conf_diff = {"same boxes": 0.0, "a box 1 px apart": 0.0}
    box_diff = 0
    for name, image in images.items():
        out = predict(model, torch.from_numpy(image)[None], thresholds)
        (got,) = predictor.predict([image])
        steps = min(got.exit_step, int(out.exit_step[0]))
        routes.add(tuple(out.sizes[0].tolist()))
        gap = max(abs(got.steps[t].confidence - float(out.step_conf[0, t])) for t in range(steps))
        sizes = out.sizes[0, 1:int(out.exit_step[0])].tolist()
        if (got.pred, got.exit_step, [p.size for p in got.patches]) == (int(out.pred[0]), int(out.exit_step[0]), sizes):
            same += 1
            moved = []
            for s, patch in enumerate(got.patches, start=1):
                side = int(out.sizes[0, s])
                box = ops.focus_boxes(out.locs[0, s:s + 1].clamp(0, 1), side, image.shape[:2])[0, 1:]
                d = int(np.abs(np.asarray(patch.box) - box.int().numpy()).max())
                if d:
                    span = np.asarray(image.shape[:2], dtype=np.float64) - side
                    moved.append({"step": s + 1, "px": d, "location_x_span": (out.locs[0, s].double().numpy()
                                                                              * span).round(4).tolist()})
                box_diff = max(box_diff, d)
            key = "a box 1 px apart" if moved else "same boxes"
            conf_diff[key] = max(conf_diff[key], gap)
            if moved:
                shifted.append({"image": name, "confidence_diff": gap, "moved": moved})
            continue
        t = next(t for t in range(1, steps + 1) if t == steps or got.patches[t - 1].size != int(out.sizes[0, t]))
        c = float(out.step_conf[0, t - 1])
        edge = float(np.abs(np.asarray(thresholds.eta[t - 1]) - c).min()) if t < model.config.T else None
        disagreements.append({"image": name, "step": t, "torch_conf": c, "onnx_conf": got.steps[t - 1].confidence,
                              "distance_to_threshold": edge})
    return {"images": len(images), "same_class_and_exit": same, "fraction": same / len(images),
            "max_confidence_diff": conf_diff["same boxes"], "max_box_diff_px": box_diff, "routes": len(routes),
            "box_moved": shifted, "max_confidence_diff_after_a_moved_box": conf_diff["a box 1 px apart"],
            "disagreements": disagreements}


def throughput(model, directory: Path, thresholds, images: list[np.ndarray], batch: int, seconds: float) -> dict:
    """images/s of both runtimes on the same decoded images, 2 threads each, alternating runs."""
    import torch

    from msgf.deploy import OnnxPredictor
    from msgf.infer import Predictor

    torch.set_num_threads(2)
    runtimes = {"torch": Predictor(model, thresholds=thresholds), "onnx": OnnxPredictor(directory, thresholds=thresholds,
                                                                                        threads=2)}
    batches = [np.stack(images[k:k + batch]) for k in range(0, len(images) - batch + 1, batch)]
    rates = {name: [] for name in runtimes}
    for predictor in runtimes.values():  # warm-up
        predictor.predict(batches[0])
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not all(rates.values()):
        for name, predictor in runtimes.items():
            start = time.perf_counter()
            for b in batches:
                predictor.predict(b)
            rates[name].append(len(batches) * batch / (time.perf_counter() - start))
    median = {name: float(np.median(r)) for name, r in rates.items()}
    return {"batch": batch, "images": len(batches) * batch, "rounds": len(rates["onnx"]), "load": os.getloadavg()[0],
            "torch_images_per_second": median["torch"], "onnx_images_per_second": median["onnx"],
            "onnx_over_torch": median["onnx"] / median["torch"]}


def peak_rss(command: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONWARNINGS"] = "ignore"
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(command), json.dumps(env)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["returncode"] not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{result['stderr_tail']}")
    return {k: result[k] for k in ("seconds", "peak_rss_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/deploy"))
    parser.add_argument("--ckpt", type=Path, help="a trained checkpoint (default: train the smoke one, as infer_scale)")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, to check the script runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)} (default: all)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: expected names among {', '.join(PARTS)}, got {args.parts!r}")
    import torch

    import msgf
    from msgf.checkpoint import load_checkpoint
    from msgf.deploy import export_model
    from msgf.deploy.export import graph_bytes
    from msgf.engine import Thresholds

    quick = args.quick
    work = args.workdir
    n_jpegs, tiff_side, n_scenes, scene_hw = (8, 2048, 12, (240, 320)) if quick else (1000, 20000, 400, (960, 1280))
    jpegs, tiffs = work / "jpegs", work / "tiffs"
    make_jpegs(jpegs, n_jpegs)
    make_tiffs(tiffs, 1, tiff_side)
    trained_name = "smoke-trained" if args.ckpt is None else f"{args.ckpt} (trained)"
    if args.ckpt is None:
        args.ckpt, _ = make_checkpoint(work, jpegs)
    model = load_checkpoint(args.ckpt)
    cfg = model.config
    eval_scenes = scenes(n_scenes, scene_hw)
    photo_set = photos(max(cfg.patch_sizes))
    thresholds = spread_thresholds(model, eval_scenes[: max(8, n_scenes // 4)])
    model.exit_thresholds = [Thresholds(thresholds.eta, budget=1.0, sizes=cfg.patch_sizes)]  # `--budget 1` below
    ckpt = work / "with-thresholds.ckpt"
    msgf.save_checkpoint(model, ckpt)
    start = time.perf_counter()
    export_model(ckpt, work / "onnx")
    export = {"seconds": time.perf_counter() - start, "onnx_bytes": graph_bytes(work / "onnx"),
              "checkpoint_bytes": ckpt.stat().st_size}
    export["onnx_over_checkpoint"] = export["onnx_bytes"] / export["checkpoint_bytes"]
    print("export", export, flush=True)

    held_out = eval_scenes[max(8, n_scenes // 4):]  # the thresholds came from the others
    images = {f"scene{k}": s for k, s in enumerate(held_out)} | {f"photo:{k}": v for k, v in photo_set.items()}
    report = {"workload": {"quick": quick, "checkpoint": str(args.ckpt), "backbone": cfg.backbone,
                           "glance": cfg.glance_size, "patch_sizes": list(cfg.patch_sizes), "T": cfg.T,
                           "scenes": len(held_out), "scene_size": list(scene_hw), "photos": sorted(photo_set),
                           "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                           "onnxruntime": __import__("onnxruntime").__version__, "torch": torch.__version__},
              "export": export, "agreement": {}, "throughput": [], "rss": {}}
    if "agreement" in parts:
        report["agreement"][trained_name] = agreement(model, work / "onnx", thresholds, images)
        print("agreement", report["agreement"], flush=True)

        torch.manual_seed(0)
        lite = msgf.build_model("efficientnet_lite0", 4, 128 if not quick else 64, (64, 96) if not quick else (32, 48),
                                3, pretrained=True, policy_head="spatial").eval()
        lite_thresholds = spread_thresholds(lite, eval_scenes[: max(8, n_scenes // 4)])
        export_model(lite, work / "onnx-lite0")
        lite_images = {k: v for k, v in images.items() if min(v.shape[:2]) >= max(lite.config.patch_sizes)}
        report["agreement"]["efficientnet_lite0 (pretrained encoders, untrained heads)"] = agreement(
            lite, work / "onnx-lite0", lite_thresholds, lite_images)
        print("agreement", report["agreement"], flush=True)

    rounds_seconds = 5 if quick else 60
    for batch in (1, 8, 32) if "throughput" in parts else ():
        report["throughput"].append(throughput(model, work / "onnx", thresholds, held_out[:64 if not quick else 32],
                                               batch if not quick else min(batch, 4), rounds_seconds))
        print("throughput", report["throughput"][-1], flush=True)

    thresholds_file = work / "thresholds.json"
    thresholds_file.write_text(thresholds.to_json())
    if "rss" in parts:  # the floors of the torch runtime: its import, and its import with the model loaded
        report["rss"]["floor: import torch"] = peak_rss([sys.executable, "-c", "import torch"])
        report["rss"]["floor: torch, msgf and the checkpoint loaded"] = peak_rss(
            [sys.executable, "-c", f"import msgf; msgf.load_checkpoint({str(ckpt)!r})"])
    # msgf infer at its defaults (batch 32 for torch, 8 for onnx; one batch read ahead), and at
    # the other runtime's batch for the JPEGs: a batch and the batch ahead hold decoded images
    for runtime, model_path, other in (("onnx", work / "onnx", 32), ("torch", ckpt, 8)) if "rss" in parts else ():
        extra = ["--runtime", "onnx"] if runtime == "onnx" else []
        for what, folder, batch in (("tiff", tiffs, None), ("jpegs", jpegs, None), ("jpegs", jpegs, other)):
            name = f"{runtime}, {what}, batch {batch or 'default'}"
            batch_flag = [] if batch is None else ["--batch", str(batch)]
            command = [sys.executable, "-m", "msgf", "infer", *extra, str(model_path), str(folder), "--budget", "1",
                       *batch_flag, "--out", str(work / f"{runtime}-{what}-{batch}.jsonl"), "--no-progress"]
            report["rss"][name] = peak_rss(command)
            print(name, report["rss"][name], flush=True)
    report["rss"]["workload"] = {"tiff": f"1 tiled pyramidal {tiff_side}x{tiff_side} TIFF",
                                 "jpegs": f"{n_jpegs} 960x1280 JPEGs"}
    name = "deploy-quick" if quick else "deploy"
    args.out.mkdir(parents=True, exist_ok=True)
    from msgf.atomic import atomic_write

    with atomic_write(args.out / f"{name}.json", "w") as file:
        file.write(json.dumps(report, indent=2) + "\n")
    with atomic_write(args.out / f"{name}.md", "w") as file:
        file.write(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    w, e = r["workload"], r["export"]
    lines = [
        "# ONNX deployment: agreement, throughput, memory, export",
        "",
        f"Checkpoint {w['checkpoint']} ({w['backbone']}, glance {w['glance']}, patches {w['patch_sizes']}, T={w['T']}); "
        f"{w['scenes']} held-out built-in scenes at {w['scene_size'][0]}x{w['scene_size'][1]} and "
        f"{len(w['photos'])} scikit-image photos; onnxruntime {w['onnxruntime']}, torch {w['torch']}, "
        f"{w['cpus']} CPUs{' (quick run: tiny inputs, numbers not meaningful)' if w['quick'] else ''}.",
        "",
        "## Agreement with the PyTorch engine",
        "",
        "| model | images | same class and exit step | max confidence diff (boxes equal) | max box diff (px) | "
        "images with a box 1 px apart | their max confidence diff | routes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, a in r["agreement"].items():
        lines.append(f"| {name} | {a['images']} | {a['fraction']:.2%} | {a['max_confidence_diff']:.1e} | "
                     f"{a['max_box_diff_px']} | {len(a['box_moved'])} | "
                     f"{a['max_confidence_diff_after_a_moved_box']:.1e} | {a['routes']} |")
    if any(a["box_moved"] or a["disagreements"] for a in r["agreement"].values()):
        lines.append("")
    for name, a in r["agreement"].items():
        for m in a["box_moved"]:
            where = "; ".join(f"step {b['step']}: location * (H-P, W-P) = {b['location_x_span']}" for b in m["moved"])
            lines.append(f"- {name}, {m['image']}: a box 1 px apart ({where}), confidence diff "
                         f"{m['confidence_diff']:.1e}")
        for d in a["disagreements"]:
            lines.append(f"- {name}, {d['image']}: routes part at step {d['step']}, torch confidence "
                         f"{d['torch_conf']:.7f}, onnx {d['onnx_conf']:.7f}, nearest threshold "
                         f"{d['distance_to_threshold']!s} away")
    lines += ["", "## Throughput (2 threads each, same thresholds, decoded images)", "",
              "| batch | torch img/s | onnxruntime img/s | onnx / torch | torch / onnx | rounds | 1-min load after |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for t in r["throughput"]:
        lines.append(f"| {t['batch']} | {t['torch_images_per_second']:.1f} | {t['onnx_images_per_second']:.1f} | "
                     f"{t['onnx_over_torch']:.2f} | {1 / t['onnx_over_torch']:.2f} | {t['rounds']} | "
                     f"{t.get('load', float('nan')):.1f} |")
    lines += ["", f"## Peak RSS of `msgf infer` ({r['rss']['workload']['tiff']}; {r['rss']['workload']['jpegs']})", "",
              "| runtime, input | seconds | peak RSS (MB) | torch: above the loaded-model floor (MB) |",
              "|---|---:|---:|---:|"]
    floor = r["rss"].get("floor: torch, msgf and the checkpoint loaded", {}).get("peak_rss_mb")
    for name, v in r["rss"].items():
        if name != "workload":
            above = f"{v['peak_rss_mb'] - floor:.0f}" if floor and name.startswith("torch") else ""
            lines.append(f"| {name} | {v['seconds']:.1f} | {v['peak_rss_mb']:.0f} | {above} |")
    lines += ["", "## Export", "", f"- {e['seconds']:.1f} s; {e['onnx_bytes'] / 2**20:.1f} MB of graphs against a "
              f"{e['checkpoint_bytes'] / 2**20:.1f} MB checkpoint ({e['onnx_over_checkpoint']:.2f}x: f_L is stored "
              f"once per patch size)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
