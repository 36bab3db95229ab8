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

from msgf.data.decode import file_problem

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
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: boxes must be groups of 4 numbers, got {value!r}") from error
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"{where}: boxes must be finite numbers, got {value!r}")
    if len(boxes) and not np.all((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])):
        raise ValueError(f"{where}: boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {value!r}")
    return boxes


def _parse_csv_boxes(text: str, where: str) -> np.ndarray:
    groups = [g.split() for g in (text or "").split(";") if g.strip()]
    try:
        values = [[float(v) for v in g] for g in groups]
    except ValueError as error:
        raise ValueError(f"{where}: boxes must be groups of 4 numbers, got {text!r}") from error
    return _boxes_array(values if groups else [], where)


def _check_row(path, label, where: str) -> str:
    """The row's label as a class name (JSONL may give integer class ids); ValueError naming
    `where` for anything else."""
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)
    for name, value in (("path", path), ("label", label)):
        if not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be a string{' or an integer (a class)' if name == 'label' else ''}"
                             f", got {type(value).__name__} {value!r}")
        if not value.strip():
            raise ValueError(f"{where}: {name} is empty")
    return label


def _csv_records(path: Path) -> list[tuple[Record, str]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: the CSV header must include 'path' and 'label', got {reader.fieldnames}")
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:  # more fields than the header: an unquoted comma in a path or label?
                    raise ValueError(f"{where}: {len(reader.fieldnames) + len(row[None])} fields, the header has "
                                     f"{len(reader.fieldnames)} (quote fields that contain commas)")
                short = [name for name in ("path", "label") if row[name] is None]
                if short:
                    raise ValueError(f"{where}: no {' or '.join(short)} (the row has fewer fields than the header)")
                label = _check_row(row["path"], row["label"], where)
                rows.append((Record(row["path"], label, _parse_csv_boxes(row.get("boxes") or "", where)),
                             where))
        except csv.Error as error:
            raise ValueError(f"{path}:{reader.line_num}: not a CSV row ({error})") from error
    return rows


def _jsonl_records(path: Path) -> list[tuple[Record, str]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not a manifest row ({error})") from error
            if not isinstance(row, dict) or "path" not in row or "label" not in row:
                raise ValueError(f"{where}: not a manifest row (expected an object with 'path' and 'label', "
                                 f"got {line.strip()[:80]!r})")
            label = _check_row(row["path"], row["label"], where)
            rows.append((Record(row["path"], label, _boxes_array(row.get("boxes") or [], where)), where))
    return rows


def read_manifest(path: str | os.PathLike) -> tuple[list[Record], list[str]]:
    """Records and class names of a manifest file.

    ValueError naming the file and line for a row without a path or label (empty, or not a
    string in JSONL), a path listed twice, boxes that are not finite (x0, y0, x1, y1) groups,
    a label missing from classes.txt, or a file that is not UTF-8 text. Whether each listed
    file exists and decodes is checked when it is read (msgf.data.decode).
    """
    path = Path(path)
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ValueError(f"source: a manifest must end in {MANIFEST_SUFFIXES}, got {str(path)!r}")
    problem = file_problem(str(path))
    if problem is not None:
        raise ValueError(f"source: manifest {str(path)!r} {problem}")
    try:
        rows = _csv_records(path) if path.suffix.lower() == ".csv" else _jsonl_records(path)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from error
    first_seen: dict[str, str] = {}
    for record, where in rows:
        key = os.path.normpath(record.path)
        if key in first_seen:
            raise ValueError(f"{where}: path {record.path!r} is listed twice (first at {first_seen[key]})")
        first_seen[key] = where
    records = [record for record, _ in rows]
    classes_file = path.parent / CLASSES_FILE
    if classes_file.is_file():
        try:
            classes = [c.strip() for c in classes_file.read_text(encoding="utf-8").splitlines() if c.strip()]
        except UnicodeDecodeError as error:
            raise ValueError(f"{classes_file}: not UTF-8 text ({error})") from error
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise ValueError(f"{classes_file}: classes {repeated} are listed more than once")
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
