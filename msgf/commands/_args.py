"""Argument types shared by the subcommands (argparse `type=` callables)."""
from __future__ import annotations

import argparse
from pathlib import Path


def budget(text: str) -> float:
    """'1.5G', '800M', '2e9' -> MACs."""
    from threshold_search import parse_budget

    try:
        return parse_budget(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """'480x640' -> (480, 640); '512' -> (512, 512)."""
    height, _, width = text.lower().partition("x")
    try:
        size = (int(height), int(width or height))
    except ValueError:
        size = (0, 0)
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or one side, e.g. 480x640, got {text!r}")
    return size


def add_threshold_arguments(parser: argparse.ArgumentParser) -> None:
    """--budget and --thresholds, which msgf infer and msgf evaluate read alike (msgf.threshold_sets)."""
    parser.add_argument("--budget", type=budget, metavar="MACS",
                        help="the thresholds for this budget, e.g. 1.5G: the checkpoint's (stored by search-thresholds "
                             "--ckpt), or with --thresholds, that file's; without it, the only set there is")
    parser.add_argument("--thresholds", type=Path, metavar="FILE",
                        help="thresholds JSON: what `msgf search-thresholds --out` writes (--budget picks a budget "
                             "when it holds several), msgf.engine.Thresholds.to_json() or a threshold_search Result")
