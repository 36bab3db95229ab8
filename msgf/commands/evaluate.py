"""`msgf evaluate`: accuracy and average MACs of a checkpoint on a dataset split.

Three modes: the thresholds stored in the checkpoint for a budget (`--budget`, as written by
`msgf search-thresholds --ckpt`), a thresholds JSON file (`--thresholds`, e.g. what
`msgf search-thresholds --out` writes; `--budget` picks one of its budgets), or `--anytime`
(every sample runs t = 1..T steps at one patch size, for accuracy-vs-steps curves).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from msgf.commands._args import add_threshold_arguments
from msgf.commands._args import image_size as _image_size
from msgf.commands._args import positive_int as _positive


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="accuracy and average MACs of a checkpoint with early exits",
        description="Evaluate a checkpoint on a dataset split with budgeted early exits or in anytime "
                    "mode; print accuracy and average MACs per image and write them as JSON.")
    parser.add_argument("checkpoint", metavar="CKPT", type=Path, help="checkpoint written by msgf train")
    parser.add_argument("--data",
                        help='"synthsigns", a manifest file, an ImageFolder directory or a folder of splits '
                             "(default: the test set the checkpoint was trained with, as msgf train recorded it)")
    parser.add_argument("--split", default="test",
                        help="split of --data, for synthsigns or a folder of splits (default: test)")
    add_threshold_arguments(parser)
    parser.add_argument("--anytime", action="store_true", help="run every sample for t = 1..T steps")
    parser.add_argument("--size", type=_positive, help="patch size for --anytime (default: each size in turn)")
    parser.add_argument("--batch-size", type=_positive, default=64, help="images per batch (default: 64)")
    parser.add_argument("--num-samples", type=_positive, help="evaluate only the first N samples")
    parser.add_argument("--image-size", type=_image_size, metavar="HxW",
                        help="image size where the data source makes or resizes images (e.g. synthsigns)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--seed", type=int, default=0,
                        help="dataset seed of --data (default: 0; a recorded test set keeps its own)")
    parser.add_argument("--out", type=Path, metavar="JSON", help="result file (default: CKPT stem + .eval.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from msgf.checkpoint import CheckpointError

    if args.anytime == (args.budget is not None or args.thresholds is not None):
        print("msgf evaluate: error: give --budget and/or --thresholds (early exits), or --anytime (not both)",
              file=sys.stderr)
        return 2
    try:
        report = evaluate(args)
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"msgf evaluate: error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.checkpoint.with_name(args.checkpoint.stem + ".eval.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"wrote {out}")
    return 0


def evaluate(args) -> dict:
    import torch
    from tqdm.auto import tqdm

    from msgf import data, engine
    from msgf.checkpoint import load_checkpoint
    from msgf.commands._checkpoint_data import open_data

    model = load_checkpoint(args.checkpoint, map_location=args.device)
    cfg = model.config
    thresholds = _thresholds(args, model)
    sizes = [args.size] if args.size is not None else list(cfg.patch_sizes)
    if args.anytime and args.size is not None and args.size not in cfg.patch_sizes:
        raise ValueError(f"--size must be one of the model's patch sizes {list(cfg.patch_sizes)}")
    dataset, name, _ = open_data(args.checkpoint, args.data, args.split, "test", num_samples=args.num_samples,
                                 image_size=args.image_size, seed=args.seed, command="evaluate")
    if len(dataset.classes) != cfg.num_classes:
        raise ValueError(f"{name} has {len(dataset.classes)} classes, the checkpoint {cfg.num_classes}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.workers, collate_fn=data.collate_batch)
    tally = _Tally(cfg, sizes)
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=args.no_progress):
        images, labels = batch["images"].to(args.device), batch["labels"].to(args.device)
        if args.anytime:
            for size in sizes:
                tally.add_anytime(size, engine.anytime(model, images, size), labels)
        else:
            tally.add(engine.predict(model, images, thresholds), labels)
    report = {"checkpoint": str(args.checkpoint), "data": name, "split": args.split if args.data else "test",
              "num_samples": tally.count, "config": cfg.to_dict()}
    if args.anytime:
        report.update(mode="anytime", anytime=tally.anytime_summary())
    else:
        report.update(mode="thresholds" if args.thresholds is not None else "budget",
                      thresholds=thresholds.to_dict(), **tally.summary())
    return report


def _thresholds(args, model):
    from msgf.engine import choose_thresholds

    if args.anytime:
        return None
    return choose_thresholds(model, budget=args.budget, thresholds=args.thresholds)


class _Tally:
    """Running sums over batches, so memory does not grow with the dataset."""

    def __init__(self, cfg, sizes):
        self.cfg, self.sizes, self.count = cfg, sizes, 0
        self.correct, self.macs = 0, 0
        self.exits = [0] * cfg.T
        self.size_steps = dict.fromkeys(cfg.patch_sizes, 0)
        self.anytime = {s: {"correct": [0] * cfg.T, "macs": None} for s in sizes}

    def add(self, out, labels) -> None:
        self.count += len(labels)
        self.correct += int((out.pred == labels).sum())
        self.macs += int(out.macs.sum())
        for t in range(1, self.cfg.T + 1):
            self.exits[t - 1] += int((out.exit_step == t).sum())
        for size in self.cfg.patch_sizes:
            self.size_steps[size] += int((out.sizes[:, 1:] == size).sum())

    def add_anytime(self, size, out, labels) -> None:
        if size == self.sizes[0]:
            self.count += len(labels)
        entry = self.anytime[size]
        entry["correct"] = [c + int((out.pred[:, t] == labels).sum()) for t, c in enumerate(entry["correct"])]
        entry["macs"] = out.macs.tolist()

    def summary(self) -> dict:
        focus = sum(self.size_steps.values())
        return {"accuracy": self.correct / self.count, "avg_macs": self.macs / self.count,
                "exit_fraction": [e / self.count for e in self.exits],
                "focus_size_fraction": {str(s): (n / focus if focus else 0.0) for s, n in self.size_steps.items()}}

    def anytime_summary(self) -> dict:
        return {str(s): {"accuracy": [c / self.count for c in v["correct"]], "macs": v["macs"]}
                for s, v in self.anytime.items()}


def print_report(report: dict) -> None:
    from threshold_search import format_macs

    print(f"{report['checkpoint']} on {report['data']} [{report['split']}], {report['num_samples']} images")
    if report["mode"] == "anytime":
        for size, curve in report["anytime"].items():
            steps = "  ".join(f"t={t}: {a:.4f} @ {format_macs(m)}"
                              for t, (a, m) in enumerate(zip(curve["accuracy"], curve["macs"]), start=1))
            print(f"  patch {size}: {steps}")
        return
    budget = report["thresholds"]["budget"]
    print(f"  accuracy {report['accuracy']:.4f}   average MACs {format_macs(report['avg_macs'])}"
          + (f" (budget {format_macs(budget)})" if budget is not None else ""))
    print("  exits per step: " + "  ".join(f"t={t}: {f:.3f}" for t, f in enumerate(report["exit_fraction"], 1)))
