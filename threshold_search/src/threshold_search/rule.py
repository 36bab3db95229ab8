"""Which comparison the thresholds mean, and reading sets written under the earlier one.

A sample exits at a node of level t < T when its score c >= max_k eta[t-1, k] (EXIT_RULE).
This is the comparison of the official GFNet and MSDNet evaluation code: with the n-th highest
score as the threshold, n samples leave, and all of a tie at that score leave with them. A
confident model's float32 softmax often returns exactly 1.0, so ties at the top are common;
under the strict c > eta rule used before (LEGACY_RULE) nobody at 1.0 could ever leave.

Sets written before the change carry no "rule" entry and meant c > eta. For every c that a
float64 holds (all float32 confidences), c > e holds exactly when c >= nextafter(e, +inf), and
nextafter is strictly increasing, so moving each finite threshold up by one float64 step keeps
every decision and the order of a level's thresholds, on tied data too. Infinities keep their
meaning under both rules (-inf: always exit / never chosen; inf: never exit).
"""
from __future__ import annotations

import numpy as np

EXIT_RULE = ">="
LEGACY_RULE = ">"  # what a stored set without a "rule" entry means
RULES = (EXIT_RULE, LEGACY_RULE)


def check_rule(rule, name: str = "rule") -> str:
    """`rule` itself, or a ValueError naming `name`."""
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"{name}: expected one of {', '.join(repr(r) for r in RULES)}, got {rule!r}")
    return rule


def to_exit_rule(eta, rule: str) -> np.ndarray:
    """eta (any shape) as float64 thresholds under EXIT_RULE that decide as `eta` did under `rule`."""
    eta = np.array(eta, dtype=np.float64)
    if check_rule(rule) == EXIT_RULE:
        return eta
    return np.where(np.isfinite(eta), np.nextafter(eta, np.inf), eta)
