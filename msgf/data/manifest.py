"""Our on-disk dataset format: a manifest listing images, labels and optional boxes.

Two spellings of the same table, chosen by suffix:
  CSV   (`.csv`):   header `path,label,boxes`; boxes as `x0 y0 x1 y1` groups joined by `;`
                    (empty when none; the column may be left out entirely).
  JSONL (`.jsonl`): one object per line, {"path": ..., "label": ..., "boxes": [[x0, y0, x1, y1], ...]}.
`path` is relative to the manifest's folder (or absolute); `label` is a class *name*; boxes
are pixels of the image as stored. A `classes.txt` beside the manifest (one name per line)
fixes the class order, so that train and test manifests agree on label indices even when a
split lacks a class; without it the classes are the sorted distinct labels.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MANIFEST_SUFFIXES = (".csv", ".jsonl")
CLASSES_FILE = "classes.txt"


@dataclass
class Record:
    path: str               # as written in the manifest
    label: str
    boxes: np.ndarray       # float32 (K, 4)


def _boxes_array(value, where: str) -> np.ndarray:
    try:
        boxes = np.asarray(value, np.float32).reshape(-1, 4)
    except ValueError as error:
        raise ValueError(f"{where}: boxes must be groups of 4 numbers, got {value!r}") from error
    if len(boxes) and not np.all((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])):
        raise ValueError(f"{where}: boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {value!r}")
    return boxes


def _parse_csv_boxes(text: str, where: str) -> np.ndarray:
    groups = [g.split() for g in (text or "").split(";") if g.strip()]
    return _boxes_array([[float(v) for v in g] for g in groups] if groups else [], where)


def read_manifest(path: str | os.PathLike) -> tuple[list[Record], list[str]]:
    """Records and class names of a manifest file."""
    path = Path(path)
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ValueError(f"source: a manifest must end in {MANIFEST_SUFFIXES}, got {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"source: manifest {str(path)!r} does not exist")
    records = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: the CSV header must include 'path' and 'label', got {reader.fieldnames}")
            for line_no, row in enumerate(reader, start=2):
                where = f"{path}:{line_no}"
                records.append(Record(row["path"], row["label"], _parse_csv_boxes(row.get("boxes") or "", where)))
    else:
        with open(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    row = json.loads(line)
                    records.append(Record(str(row["path"]), str(row["label"]),
                                          _boxes_array(row.get("boxes") or [], where)))
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ValueError(f"{where}: not a manifest row ({error})") from error
    classes_file = path.parent / CLASSES_FILE
    if classes_file.is_file():
        classes = [c.strip() for c in classes_file.read_text().splitlines() if c.strip()]
        unknown = sorted({r.label for r in records} - set(classes))
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not listed in {classes_file}")
    else:
        classes = sorted({r.label for r in records})
    return records, classes


def write_manifest(path: str | os.PathLike, records: list[Record], classes: list[str]) -> None:
    """Write a manifest (format by suffix) and the classes.txt beside it, each atomically."""
    path = Path(path)
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ValueError(f"path: a manifest must end in {MANIFEST_SUFFIXES}, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        if path.suffix.lower() == ".csv":
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "boxes"])
            for r in records:
                boxes = ";".join(" ".join(f"{v:.2f}" for v in box) for box in np.asarray(r.boxes).reshape(-1, 4))
                writer.writerow([r.path, r.label, boxes])
        else:
            for r in records:
                boxes = [[round(float(v), 2) for v in box] for box in np.asarray(r.boxes).reshape(-1, 4)]
                handle.write(json.dumps({"path": r.path, "label": r.label, "boxes": boxes}) + "\n")
    os.replace(tmp, path)
    classes_tmp = path.parent / (CLASSES_FILE + ".tmp")
    classes_tmp.write_text("".join(f"{c}\n" for c in classes))
    os.replace(classes_tmp, path.parent / CLASSES_FILE)
