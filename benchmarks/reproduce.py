"""Reproduce the paper's claims on the built-in scenes: the same as `msgf reproduce` (issue 7).

    OMP_NUM_THREADS=1 python benchmarks/reproduce.py --preset tiny     # minutes: a pipeline check
    python benchmarks/reproduce.py --preset cpu                        # about 2 hours: docs/results/synthsigns.md
    python benchmarks/reproduce.py --preset cpu-scratch --jobs 2       # from scratch: docs/results/scratch/

Models are cached in --workdir (default runs/reproduce-PRESET); rerun the same command to
resume an interrupted run or to regenerate the report from finished models.
"""
from __future__ import annotations

import argparse
import sys

from msgf.commands.reproduce import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
