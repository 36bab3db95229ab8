"""The `msgf` command line.

Each subcommand lives next to the code it drives: a module listed in COMMAND_MODULES defines
`register(subparsers)`, which adds its parser and sets `func` to a callable taking the parsed
arguments and returning an exit status.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from msgf import __version__

COMMAND_MODULES = [  # each defines register(subparsers); keep one per line
    "msgf.commands.search_thresholds",
    "msgf.commands.evaluate",
    "msgf.commands.error_budget",
    "msgf.commands.train",
    "msgf.commands.data",
    "msgf.commands.infer",
    "msgf.commands.export",
    "msgf.commands.reproduce",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msgf", description="Multi-Scale Glance-and-Focus Networks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
