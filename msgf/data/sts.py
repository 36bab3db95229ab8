"""Swedish Traffic Signs (Larsson & Felsberg 2011): the speed-limit task's annotations.

An `annotations.txt` line reads
    <file>:<VIS>, <x_lr>, <y_lr>, <x_ul>, <y_ul>, <TYPE>, <NAME>;<VIS>, ...;
with the *lower-right* (maximum) corner first. A bare `MISC_SIGNS` entry has no fields, and
nothing after the colon means the image has no signs. Some numbers carry stray trailing
characters (e.g. `577.65l`); the leading number is used.

The task as published (attention-sampling paper, speed-limit experiment):
  drop MISC_SIGNS entries; no signs left -> EMPTY; otherwise keep the 50/70/80 signs; none ->
  drop the image; rank the rest by visibility (VISIBLE < BLURRED < SIDE_ROAD < OCCLUDED), then
  by box area, largest first; drop the image unless the first is VISIBLE; its name is the label.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

CLASSES = ["EMPTY", "50_SIGN", "70_SIGN", "80_SIGN"]
VISIBILITY_RANK = {"VISIBLE": 0, "BLURRED": 1, "SIDE_ROAD": 2, "OCCLUDED": 3}
MISC = "MISC_SIGNS"
_LEADING_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+))")


@dataclass
class Sign:
    visibility: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 (upper-left corner first)
    type: str
    name: str

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass
class StsRecord:
    file: str
    label: str | None            # one of CLASSES, or None when the task drops the image
    boxes: np.ndarray            # float32 (K, 4): kept 50/70/80 signs, ranked; the label's sign first
    signs: list[Sign] = field(default_factory=list)  # every sign of the line except MISC_SIGNS


def _number(text: str, where: str) -> float:
    match = _LEADING_NUMBER.match(text)
    if match is None:
        raise ValueError(f"{where}: expected a number, got {text!r}")
    return float(match.group(1))


def _parse_sign(entry: str, where: str) -> Sign:
    parts = [p.strip() for p in entry.split(",")]
    if len(parts) != 7:
        raise ValueError(f"{where}: a sign entry has 7 comma-separated fields, got {len(parts)} in {entry!r}")
    visibility = parts[0]
    if visibility not in VISIBILITY_RANK:
        raise ValueError(f"{where}: unknown visibility {visibility!r} (expected one of {list(VISIBILITY_RANK)})")
    x_lr, y_lr, x_ul, y_ul = (_number(p, where) for p in parts[1:5])
    # min/max rather than trusting the order: the corners are documented max-first, and a box
    # must come out the same either way
    box = (min(x_lr, x_ul), min(y_lr, y_ul), max(x_lr, x_ul), max(y_lr, y_ul))
    return Sign(visibility, box, parts[5], parts[6])


def label_image(signs: list[Sign]) -> tuple[str | None, list[Sign]]:
    """The published rule: (label or None, the ranked 50/70/80 signs)."""
    if not signs:
        return "EMPTY", []
    speed = [s for s in signs if s.name in CLASSES[1:]]
    ranked = sorted(speed, key=lambda s: (VISIBILITY_RANK[s.visibility], -s.area))
    if not ranked or ranked[0].visibility != "VISIBLE":
        return None, ranked
    return ranked[0].name, ranked


def parse_annotations(path: str | os.PathLike) -> list[StsRecord]:
    """One record per image line of an STS annotations.txt, in file order."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            where = f"{os.fspath(path)}:{line_no}"
            if ":" not in line:
                raise ValueError(f"{where}: expected '<file>:<signs>', got {line!r}")
            file, rest = line.split(":", 1)
            signs = [_parse_sign(entry, where) for entry in (e.strip() for e in rest.split(";"))
                     if entry and entry != MISC]
            label, ranked = label_image(signs)
            boxes = np.asarray([s.box for s in ranked], np.float32).reshape(-1, 4)
            records.append(StsRecord(file.strip(), label, boxes, signs))
    return records
