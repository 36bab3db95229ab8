"""`msgf data synth`: write the built-in speed-limit scenes to disk (JPEG + manifest)."""
from __future__ import annotations

import argparse

from msgf.commands._args import non_negative_int, positive_int


def _synth(args: argparse.Namespace) -> int:
    from msgf.data.synth_export import parse_size, write_synthsigns

    size = parse_size(args.size)
    for split in args.split:
        manifest = write_synthsigns(args.out, split, args.num, size, seed=args.seed, workers=args.workers,
                                    progress=not args.no_progress)
        print(f"wrote {args.num} {split} scenes, manifest {manifest}")
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="dataset tools")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    synth = commands.add_parser("synth", help="write procedural speed-limit scenes as JPEG + manifest")
    synth.add_argument("--out", required=True, help="output folder (DIR/<split>/*.jpg, DIR/<split>.csv)")
    synth.add_argument("--split", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"])
    synth.add_argument("--num", type=positive_int, required=True, help="scenes per split")
    synth.add_argument("--size", default="960x1280", help="HEIGHTxWIDTH (default 960x1280)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=non_negative_int, default=1)
    synth.add_argument("--no-progress", action="store_true")
    synth.set_defaults(func=_synth)
