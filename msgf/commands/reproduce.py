"""`msgf reproduce`: train, measure and report the paper's claims on the built-in scenes (issue 7).

The work is msgf.reproduce's; this module parses the arguments and reports errors.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _integer_from(minimum: int, expected: str):
    """An argparse type: an integer >= minimum, else an error saying `expected`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments, shared with benchmarks/reproduce.py."""
    from msgf.reproduce.plan import PRESETS

    parser.add_argument("--preset", required=True, choices=PRESETS,
                        help="tiny: the smoke recipe, minutes (a test of the pipeline); "
                             "cpu: the cpu-demo recipe from ImageNet encoders, about two hours on 2 cores; "
                             "cpu-scratch: the cpu-demo-scratch recipe from random weights, a few hours")
    parser.add_argument("--workdir", type=Path,
                        help="where the models are trained and cached (default: runs/reproduce-PRESET); "
                             "rerunning reuses finished runs and resumes unfinished ones")
    parser.add_argument("--out", type=Path,
                        help="report directory for synthsigns.{md,json} and the plots "
                             "(default: docs/results for cpu, docs/results/scratch for cpu-scratch, the workdir for tiny)")
    parser.add_argument("--seed", type=_integer_from(0, "a non-negative integer"), default=0,
                        help="seed of every run (default: 0)")
    parser.add_argument("--jobs", type=_integer_from(1, "a positive integer"), default=1,
                        help="models trained at once, each in its own process with an equal share of the "
                             "threads (default: 1; 2 on a 2-core machine takes about half the time)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (one line per run stays)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce", help="reproduce the paper's claims on the built-in scenes, with a results report",
        description="Train the static baselines, one GFNet per patch size, MS-GFNet and its reward ablation; "
                    "sweep budgets (thresholds searched on validation, applied to test), run the policy and "
                    "exit-criterion ablations, a throughput comparison and MS-GFNet's error budget; write "
                    "synthsigns.md/.json with a verdict per claim (PASS, FAIL, or INCONCLUSIVE where its paired 95% "
                    "interval spans the target).")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from msgf.reproduce.pipeline import reproduce

    command = "msgf reproduce " + " ".join(shlex.quote(a) for a in _argv(args))
    try:
        report = reproduce(args.preset, workdir=args.workdir, out=args.out, progress=not args.no_progress,
                           seed=args.seed, jobs=args.jobs, command=command)
    except ValueError as error:
        print(f"msgf reproduce: error: {error}", file=sys.stderr)
        return 2
    from msgf.reproduce.report import claims_summary

    passed = sum(c["passed"] for c in report["claims"])
    print(f"{passed} of {len(report['claims'])} claims pass. " + claims_summary(report["claims"]).replace("**", ""))
    return 0


def _argv(args) -> list[str]:
    argv = ["--preset", args.preset]
    for flag, value in (("--workdir", args.workdir), ("--out", args.out)):
        if value is not None:
            argv += [flag, str(value)]
    if args.seed:
        argv += ["--seed", str(args.seed)]
    if args.jobs != 1:
        argv += ["--jobs", str(args.jobs)]
    if args.no_progress:
        argv.append("--no-progress")
    return argv
