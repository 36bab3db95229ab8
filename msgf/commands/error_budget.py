"""`msgf error-budget`: where a checkpoint's errors come from, on a split whose images carry boxes.

Prints (and writes as JSON and markdown) coverage, reading in context and the error buckets of
`msgf.engine.error_budget`, per patch size with every step run, and at the exit thresholds of a
budget when one is given.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from msgf.commands._args import budget as _budget
from msgf.commands._args import image_size as _image_size
from msgf.commands._args import positive_int as _positive


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "error-budget", help="where a checkpoint's errors come from: locating, reading or aggregation",
        description="Run a checkpoint on a split whose images carry object boxes and split its errors into "
                    "EMPTY called a sign, object never covered by a patch, covered but misread, and read but "
                    "lost by f_C; with coverage, reading in context, and the accuracy if every object were "
                    "covered (measured) or every covered one read (a bound).")
    parser.add_argument("checkpoint", metavar="CKPT", type=Path, help="checkpoint written by msgf train")
    parser.add_argument("--data", default="synthsigns",
                        help='"synthsigns" (default), a manifest file or an ImageFolder directory, with boxes')
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--budget", type=_budget, metavar="MACS",
                        help="also at the thresholds for this budget, e.g. 650M (the checkpoint's, or --thresholds')")
    parser.add_argument("--thresholds", type=Path, metavar="FILE",
                        help="also at these thresholds: a file msgf search-thresholds --out wrote, or one set (JSON)")
    parser.add_argument("--num-samples", type=_positive, help="only the first N samples")
    parser.add_argument("--image-size", type=_image_size, metavar="HxW",
                        help="image size where the data source makes or resizes images")
    parser.add_argument("--batch-size", type=_positive, default=32, help="images per batch (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--out", type=Path, metavar="JSON",
                        help="result file (default: CKPT stem + .errors.json, with a .md beside it)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from msgf.checkpoint import CheckpointError

    try:
        report = measure(args)
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"msgf error-budget: error: {error}", file=sys.stderr)
        return 2
    from msgf.engine.error_budget import format_markdown

    out = args.out or args.checkpoint.with_name(args.checkpoint.stem + ".errors.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    table = format_markdown(report["budget"])
    out.with_suffix(".md").write_text(table + "\n")
    print(f"{report['checkpoint']} on {report['data']} [{report['split']}], {report['num_samples']} images")
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def measure(args) -> dict:
    import torch
    from tqdm.auto import tqdm

    from msgf import data
    from msgf.checkpoint import load_checkpoint
    from msgf.engine import choose_thresholds
    from msgf.engine.error_budget import error_budget

    model = load_checkpoint(args.checkpoint, map_location=args.device)
    thresholds = None
    if args.budget is not None or args.thresholds is not None:
        thresholds = choose_thresholds(model, budget=args.budget, thresholds=args.thresholds)
    dataset = data.open_dataset(args.data, args.split, seed=args.seed, num_samples=args.num_samples,
                                image_size=args.image_size)
    if len(dataset.classes) != model.config.num_classes:
        raise ValueError(f"{args.data} has {len(dataset.classes)} classes, the checkpoint {model.config.num_classes}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                                         collate_fn=data.collate_batch)
    with tqdm(total=len(loader), desc="error budget", unit="batch", disable=args.no_progress) as bar:
        budget = error_budget(model, loader, thresholds=thresholds, device=args.device, progress=bar)
    return {"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split,
            "num_samples": len(dataset), "budget": budget}
