"""Compute budgets: average Multiply-Adds (MACs) per image, written like "1.5G"."""
from __future__ import annotations

import math
import re

_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}
_PATTERN = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMG]?)\s*", re.IGNORECASE)


def parse_budget(value) -> float:
    """MACs per image from "1.5G", "800M", "250K", "2e9" or a plain positive number."""
    if isinstance(value, bool):
        raise TypeError(f"budget: expected a number or a string like '1.5G', got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        if match is None:
            raise ValueError(f"budget: cannot parse {value!r}; expected a positive number with an "
                             "optional K, M or G suffix, e.g. '1.5G'")
        number = float(match.group(1)) * _SUFFIXES[match.group(2).upper()]
    else:
        raise TypeError(f"budget: expected a number or a string like '1.5G', got {type(value).__name__}")
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"budget: expected a positive finite number of MACs, got {value!r}")
    return number


def format_macs(macs: float) -> str:
    """Short human form, e.g. 1.5e9 -> '1.50G'."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(macs) >= scale:
            return f"{macs / scale:.2f}{suffix}"
    return f"{macs:.0f}"
