"""`msgf search-thresholds`: exit thresholds per compute budget, from exported trajectories.

The search itself is the standalone `threshold_search` package; this module only gets the
trajectories, runs the method asked for and the geometric baseline, and reports them.
Trajectories come from `.npz` files (`--trajectories`/`--test`) or from a checkpoint (`--ckpt`)
on `--data` or on the sets it was trained with: then they are exported once and cached next to
the checkpoint.
With `--ckpt`, the thresholds found are stored back into the checkpoint (atomically), where
`msgf evaluate --budget`, `msgf infer --budget` and `msgf export` find them; `--ckpt` with
`--trajectories` stores what was searched on the files training exported (as `make demo`
does), after checking that they are that model's.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from msgf.commands._args import budget as _budget
from msgf.commands._args import image_size as _image_size
from msgf.commands._args import positive_int as _positive
from threshold_search import CRITERIA, METHODS, Front, Trajectories, format_macs, parse_budget, plot_fronts, search


def _static_point(text: str) -> tuple[str, float, float]:
    label, _, numbers = text.rpartition("=")
    macs, _, accuracy = numbers.partition(",")
    try:
        point = (label, parse_budget(macs), float(accuracy))
    except ValueError:
        point = None
    if not label or point is None or not 0.0 <= point[2] <= 1.0:
        raise argparse.ArgumentTypeError(f"expected LABEL=MACS,ACCURACY like 'ResNet-50 224px=4.1G,0.76', got {text!r}")
    return point


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search-thresholds",
        help="choose exit thresholds for compute budgets (GA, geometric or exhaustive)",
        description="Search the exit thresholds that maximise validation accuracy within each "
                    "average-MACs budget, report them on a test split beside the geometric "
                    "(MSDNet) baseline, and write them as JSON.")
    parser.add_argument("--trajectories", metavar="VAL.npz", type=Path,
                        help="validation trajectories exported by msgf (see threshold_search/README.md)")
    parser.add_argument("--ckpt", metavar="CKPT", type=Path,
                        help="a checkpoint: store the thresholds found in it; without --trajectories, export its "
                             "trajectories first (on --data, or on the sets it was trained with; cached next to it)")
    from_ckpt = parser.add_argument_group("with --ckpt and no --trajectories")
    from_ckpt.add_argument("--data", help='validation data: "synthsigns", a manifest, an ImageFolder directory or '
                                          "a folder of splits (default: the validation and test sets the "
                                          "checkpoint was trained with, as msgf train recorded them)")
    from_ckpt.add_argument("--split", default="val", help="split of --data to search on (default: val)")
    from_ckpt.add_argument("--test-data", help="test data to report on (never searched)")
    from_ckpt.add_argument("--test-split", default="test", help="split of --test-data (default: test)")
    from_ckpt.add_argument("--num-samples", type=_positive, help="use only the first N samples of each split")
    from_ckpt.add_argument("--image-size", metavar="HxW", type=_image_size,
                           help="image size where the data source makes or resizes images (e.g. synthsigns)")
    from_ckpt.add_argument("--data-seed", type=int, default=0,
                           help="dataset seed, for generated sources like synthsigns (default: 0; recorded sets "
                                "keep their own)")
    from_ckpt.add_argument("--batch-size", type=_positive, default=64, help="images per export batch (default: 64)")
    from_ckpt.add_argument("--device", default="cpu", help="torch device for the export (default: cpu)")
    parser.add_argument("--budget", action="append", required=True, type=_budget, metavar="MACS",
                        help="average MACs per image, e.g. 1.5G, 800M; repeat for a sweep")
    parser.add_argument("--test", metavar="TEST.npz", type=Path,
                        help="test trajectories to report the thresholds on (never searched)")
    parser.add_argument("--method", choices=METHODS, default="ga", help="search method (default: ga)")
    parser.add_argument("--criterion", choices=CRITERIA, default="confidence",
                        help="exit criterion (default: confidence)")
    parser.add_argument("--plot", metavar="PNG", type=Path,
                        help="draw accuracy vs MACs: the search, geometric per fixed size, static points")
    parser.add_argument("--static", action="append", default=[], type=_static_point,
                        metavar="LABEL=MACS,ACC", help="a static backbone point for --plot; repeatable")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", metavar="JSON", type=Path, help="write thresholds and scores as JSON")
    parser.set_defaults(func=run)


def trajectories_from_files(args) -> tuple[Trajectories, Trajectories | None]:
    """(validation, test or None) read from --trajectories / --test."""
    if args.test is not None and not args.test.exists():
        raise FileNotFoundError(f"--test: {args.test} does not exist. A training run without a test set writes no "
                                f"test_trajectories.npz (its log and summary.json say which data served each "
                                f"role): leave --test out, or train with --test-data")
    validation = Trajectories.load(args.trajectories)
    test = Trajectories.load(args.test) if args.test is not None else None
    if test is not None and (test.T != validation.T or test.sizes.tolist() != validation.sizes.tolist()):
        raise ValueError(f"{args.test}: T={test.T}, sizes={test.sizes.tolist()} differ from the "
                         f"validation trajectories (T={validation.T}, sizes={validation.sizes.tolist()})")
    return validation, test


def trajectories_from_checkpoint(args) -> tuple[Path, Path | None]:
    """(validation, test or None) trajectory files exported from --ckpt on --data / --test-data,
    cached; without --data, on the validation and test sets the checkpoint was trained with."""
    from msgf.commands._checkpoint_data import recorded_splits

    validation = _export_cached(args, args.data, args.split, "val")
    test = None
    if args.test_data is not None:
        test = _export_cached(args, args.test_data, args.test_split, "test")
    elif args.data is None:
        if (recorded_splits(args.ckpt) or {}).get("test") is not None:
            test = _export_cached(args, None, args.test_split, "test")
        else:
            print(f"{args.ckpt} was trained without a test set: no test numbers (give --test-data)", file=sys.stderr)
    return validation, test


def _export_cached(args, source: str | None, split: str, role: str) -> Path:
    """The trajectory file of the checkpoint on one data split (None: its recorded `role` set),
    exported unless cached.

    The cache key covers the model (configuration and weights, not the stored thresholds,
    which this command itself rewrites) and every data argument, so a retrained checkpoint or
    another split never reuses a stale file."""
    import torch

    from msgf import data
    from msgf.checkpoint import load_checkpoint, read_checkpoint
    from msgf.commands._checkpoint_data import open_data
    from msgf.engine import export_trajectories
    from msgf.models.inference import inference_copy

    option = "--data" if role == "val" else "--test-data"
    dataset, name, data_key = open_data(args.ckpt, source, split, role, num_samples=args.num_samples,
                                        image_size=args.image_size, seed=args.data_seed, command="search-thresholds",
                                        option=option)
    key = json.dumps([_model_digest(read_checkpoint(args.ckpt)), *data_key])
    label = split if source is not None else role
    path = args.ckpt.with_name(f"{args.ckpt.stem}.{label}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz")
    if path.exists():
        print(f"using cached trajectories {path}", file=sys.stderr)
        return path
    model = load_checkpoint(args.ckpt, map_location=args.device)
    if len(dataset.classes) != model.config.num_classes:
        raise ValueError(f"{name} has {len(dataset.classes)} classes, the checkpoint {model.config.num_classes}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, collate_fn=data.collate_batch)
    batches = ({"images": b["images"].to(args.device), "labels": b["labels"]} for b in loader)
    # what msgf infer and the Predictor run (BatchNorm folded), as training's own export
    export_trajectories(inference_copy(model.eval()), batches, path, total=len(loader))
    return path


def _model_digest(payload: dict) -> str:
    import torch

    digest = hashlib.sha256(json.dumps(payload["config"], sort_keys=True).encode())
    for name, tensor in sorted(payload["state_dict"].items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_sources(args) -> None:
    if args.ckpt is None and args.trajectories is None:
        raise ValueError("give --trajectories VAL.npz, --ckpt CKPT, or both (to store what is searched on the files)")
    if args.trajectories is not None and (args.data or args.test_data):
        raise ValueError("--data and --test-data go with --ckpt alone (they export its trajectories); "
                         "with --trajectories use --test")
    if args.trajectories is None and args.test is not None:
        raise ValueError("with --ckpt alone, give the test split as --test-data (exported and cached like --data)")


def _check_model_of(path: Path, trajectories: Trajectories, source: Path) -> None:
    """Thresholds searched on `trajectories` are stored in the checkpoint at `path` only if they
    are that model's: the same steps, patch sizes and MACs of every path of sizes."""
    import numpy as np

    from msgf.checkpoint import load_checkpoint
    from msgf.engine.trajectories import node_macs

    model = load_checkpoint(path)
    cfg = model.config
    if (trajectories.T != cfg.T or trajectories.sizes.tolist() != list(cfg.patch_sizes)
            or not np.allclose(trajectories.macs, node_macs(model), rtol=1e-9, atol=0)):
        raise ValueError(f"{source} (T={trajectories.T}, sizes={trajectories.sizes.tolist()}, glance "
                         f"{format_macs(trajectories.macs[0])} MACs) was not exported from {path} (T={cfg.T}, "
                         f"sizes={list(cfg.patch_sizes)}, glance {format_macs(model.step_macs(1))} MACs)")


def _store_in_checkpoint(path: Path, searched: Front) -> None:
    from msgf.checkpoint import update_thresholds
    from msgf.engine import Thresholds

    update_thresholds(path, [Thresholds.from_search(result) for result in searched.results])
    print(f"stored thresholds for {len(searched.results)} budget(s) in {path}", file=sys.stderr)


def run(args) -> int:
    from msgf.checkpoint import CheckpointError

    try:
        _check_sources(args)
        files = (args.trajectories, args.test)  # what the report names as searched on and tested on
        if args.trajectories is None:
            files = trajectories_from_checkpoint(args)  # exported, or cached next to the checkpoint
            validation = Trajectories.load(files[0])
            test = None if files[1] is None else Trajectories.load(files[1])
        else:
            validation, test = trajectories_from_files(args)
            if args.ckpt is not None:
                _check_model_of(args.ckpt, validation, args.trajectories)
        searched = search(validation, budgets=args.budget, method=args.method,
                          criterion=args.criterion, seed=args.seed)
        geometric = (searched if args.method == "geometric" else
                     search(validation, budgets=args.budget, method="geometric",
                            criterion=args.criterion, seed=args.seed))
        if args.ckpt is not None:
            _store_in_checkpoint(args.ckpt, searched)
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"msgf search-thresholds: error: {error}", file=sys.stderr)
        return 2
    report = _report(args, searched, geometric, test, files)
    print(_table(report))
    if args.out is not None:
        _write_json(args.out, report)
    if args.plot is not None:
        plot_fronts(args.plot, None if args.method == "geometric" else searched, geometric,
                    {label: (macs, accuracy) for label, macs, accuracy in args.static},
                    label=f"MS-GFNet ({args.method} thresholds)")
    return 0


def _scores(result, test) -> dict:
    scores = dict(validation=dict(accuracy=result.accuracy, macs=result.macs), test=None)
    if test is not None:
        accuracy, macs = result.evaluate_on(test)
        scores["test"] = dict(accuracy=accuracy, macs=macs)
    return scores


def _report(args, searched: Front, geometric: Front, test, files: tuple[Path, Path | None]) -> dict:
    rows = []
    for result, baseline in zip(searched.results, geometric.results):
        rows.append(dict(**result.to_dict(), **_scores(result, test),
                         geometric=dict(**baseline.to_dict(), **_scores(baseline, test))))
    return dict(trajectories=str(files[0]), test=None if files[1] is None else str(files[1]),
                checkpoint=None if args.ckpt is None else str(args.ckpt),
                method=args.method, criterion=args.criterion, seed=args.seed, results=rows)


def _table(report: dict) -> str:
    def pair(scores):
        if scores is None:
            return f"{'-':>8} {'-':>8}"
        return f"{100 * scores['accuracy']:7.2f}% {format_macs(scores['macs']):>8}"

    header = (f"{'budget':>8} | {'val acc':>8} {'val MACs':>8} | {'test acc':>8} {'test MACs':>8} || "
              f"geometric: {'val acc':>8} {'val MACs':>8} | {'test acc':>8} {'test MACs':>8} {'size':>5}")
    lines = [f"method={report['method']} criterion={report['criterion']} seed={report['seed']}",
             header, "-" * len(header)]
    for row in report["results"]:
        base = row["geometric"]
        lines.append(f"{format_macs(row['budget']):>8} | {pair(row['validation'])} | {pair(row['test'])} || "
                     f"{'':>10} {pair(base['validation'])} | {pair(base['test'])} {base['details']['size']:>5}")
    return "\n".join(lines)


def _write_json(path: Path, report: dict) -> None:
    from msgf.atomic import atomic_write

    with atomic_write(path, "w") as file:  # a reader never sees half a file
        json.dump(report, file, indent=2, allow_nan=False)
        file.write("\n")
