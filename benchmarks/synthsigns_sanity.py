"""Is the synthetic speed-limit task hard for the right reason?

Trains the same static backbone (torchvision mobilenet_v3_small from scratch, BatchNorm
momentum 0.1, see design.md section 7) twice on fresh procedural scenes:
  glance: the whole scene resized to 96x96 (antialiased), as the glance step sees it;
  crop:   a full-resolution 96x96 crop centred on the target sign; for an EMPTY scene a crop
          at a random location (--empty-crop random, the default) or centred on one of its
          red-ringed decoys (--empty-crop decoy: the crop model must then read digits rather
          than detect "a sign is centred"; it needs a longer budget).
The glance model should stay near the majority class (0.5) and the crop model well above.
Writes benchmarks/results/synthsigns_sanity.{json,md} (synthsigns_sanity_decoy.* for --empty-crop decoy).

    python benchmarks/synthsigns_sanity.py --train-scenes 12000 --epochs 4
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from msgf.data.synthsigns import CLASSES, render_scene

SIDE = 96
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def crop_centre(image: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """A SIDE x SIDE window centred at (cx, cy), shifted to lie inside the image."""
    h, w = image.shape[:2]
    top = int(np.clip(round(cy - SIDE / 2), 0, h - SIDE))
    left = int(np.clip(round(cx - SIDE / 2), 0, w - SIDE))
    return image[top:top + SIDE, left:left + SIDE]


def build_inputs(split: str, count: int, seed: int, size: tuple[int, int], jitter: int, empty_crop: str):
    rng = np.random.default_rng(seed + 17)
    glances = torch.empty((count, 3, SIDE, SIDE), dtype=torch.uint8)
    crops = torch.empty((count, 3, SIDE, SIDE), dtype=torch.uint8)
    labels = torch.empty(count, dtype=torch.int64)
    for i in range(count):
        scene = render_scene(i, split, seed, size)
        image = torch.from_numpy(scene.image).permute(2, 0, 1)[None].float()
        glances[i] = F.interpolate(image, size=(SIDE, SIDE), mode="bilinear", antialias=True,
                                   align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        if scene.box is not None:
            box = scene.box
        elif empty_crop == "decoy" and len(scene.decoy_boxes):
            box = scene.decoy_boxes[rng.integers(len(scene.decoy_boxes))]
        else:
            x, y = rng.uniform(0, size[1]), rng.uniform(0, size[0])
            box = np.array([x, y, x, y])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if jitter:
            cx, cy = cx + rng.integers(-jitter, jitter + 1), cy + rng.integers(-jitter, jitter + 1)
        crops[i] = torch.from_numpy(np.ascontiguousarray(crop_centre(scene.image, cx, cy))).permute(2, 0, 1)
        labels[i] = scene.label
    return glances, crops, labels


def make_model() -> torch.nn.Module:
    model = torchvision.models.mobilenet_v3_small(num_classes=len(CLASSES))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1  # torchvision's 0.01 leaves eval statistics lagging in short runs
    return model


def normalise(batch_uint8: torch.Tensor) -> torch.Tensor:
    return (batch_uint8.float() / 255 - MEAN) / STD


def train_and_test(inputs, labels, test_inputs, test_labels, epochs: int, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = make_model()
    steps = epochs * (len(inputs) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs))
        for k in range(len(inputs) // batch):
            idx = order[k * batch:(k + 1) * batch]
            loss = F.cross_entropy(model(normalise(inputs[idx])), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(normalise(test_inputs[k:k + 256])).argmax(1)
                                 for k in range(0, len(test_inputs), 256)])
    per_class = {CLASSES[c]: float((predictions[test_labels == c] == c).float().mean())
                 for c in range(len(CLASSES)) if (test_labels == c).any()}
    return {"test_accuracy": float((predictions == test_labels).float().mean()),
            "per_class_recall": per_class, "train_seconds": round(train_seconds, 1), "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-scenes", type=int, default=12000)
    parser.add_argument("--test-scenes", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", default="480x640")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--empty-crop", choices=("random", "decoy"), default="random")
    parser.add_argument("--models", nargs="+", choices=("glance", "crop"), default=["glance", "crop"],
                        help="train only some (results then go to synthsigns_sanity_<model>.*)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))

    start = time.perf_counter()
    train_glance, train_crop, train_labels = build_inputs("train", args.train_scenes, args.seed, size, jitter=8,
                                                            empty_crop=args.empty_crop)
    test_glance, test_crop, test_labels = build_inputs("test", args.test_scenes, args.seed, size, jitter=0,
                                                         empty_crop=args.empty_crop)
    generation_seconds = time.perf_counter() - start

    results = {"size": list(size), "train_scenes": args.train_scenes, "test_scenes": args.test_scenes,
               "epochs": args.epochs, "batch": args.batch, "empty_crop": args.empty_crop,
               "seed": args.seed, "threads": args.threads,
               "generation_seconds": round(generation_seconds, 1),
               "majority_baseline": float((test_labels == test_labels.mode().values).float().mean())}
    rows = [("majority class", results["majority_baseline"], "-")]
    if "glance" in args.models:
        results["glance_96"] = train_and_test(train_glance, train_labels, test_glance, test_labels,
                                              args.epochs, args.batch, args.seed)
        print("glance", results["glance_96"], flush=True)
        rows.append(("96 px glance of the whole scene", results["glance_96"]["test_accuracy"],
                     results["glance_96"]["train_seconds"]))
    if "crop" in args.models:
        results["crop_96_at_sign"] = train_and_test(train_crop, train_labels, test_crop, test_labels,
                                                    args.epochs, args.batch, args.seed)
        print("crop", results["crop_96_at_sign"], flush=True)
        rows.append((f"96 px full-resolution crop at the sign (EMPTY: {args.empty_crop} location)",
                     results["crop_96_at_sign"]["test_accuracy"], results["crop_96_at_sign"]["train_seconds"]))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "synthsigns_sanity" + ("_decoy" if args.empty_crop == "decoy" else "")
    if len(args.models) == 1:
        stem += "_" + args.models[0]
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# synthsigns sanity ({size[0]}x{size[1]}, mobilenet_v3_small from scratch, "
             f"{args.train_scenes} train / {args.test_scenes} test scenes, {args.epochs} epochs, seed {args.seed})",
             "", "| input | test accuracy | train seconds |", "|---|---|---|"]
    lines += [f"| {name} | {acc:.3f} | {secs} |" for name, acc, secs in rows]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
