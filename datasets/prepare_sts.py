"""Swedish Traffic Signs -> msgf manifests for the speed-limit task.

    python datasets/prepare_sts.py --root /data/sts [--out /data/sts]

Reads Set1 (train) and Set2 (test) annotations and writes <out>/train.csv, <out>/test.csv and
<out>/classes.txt (EMPTY, 50_SIGN, 70_SIGN, 80_SIGN). Images may lie in SetN/ or in
SetN/SetNPart0/ (see datasets/sts/README.md). Prints the class counts of each split; an
annotated image that cannot be found is an error, not a silent drop.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from msgf.data.manifest import Record, write_manifest
from msgf.data.sts import CLASSES, parse_annotations

SPLITS = {"train": "Set1", "test": "Set2"}


def _candidates(root: Path, set_name: str) -> list[Path]:
    return [root / set_name, root / set_name / f"{set_name}Part0"]


def prepare_split(root: Path, set_name: str, out: Path) -> tuple[list[Record], Counter]:
    folders = _candidates(root, set_name)
    annotations = next((f / "annotations.txt" for f in folders if (f / "annotations.txt").is_file()), None)
    if annotations is None:
        raise FileNotFoundError(f"--root: no annotations.txt in {' or '.join(map(str, folders))}")
    records, counts, missing = [], Counter(), []
    for entry in parse_annotations(annotations):
        if entry.label is None:
            counts["dropped"] += 1
            continue
        image = next((f / entry.file for f in folders if (f / entry.file).is_file()), None)
        if image is None:
            missing.append(entry.file)
            continue
        records.append(Record(os.path.relpath(image, out), entry.label, entry.boxes))
        counts[entry.label] += 1
    if missing:
        raise FileNotFoundError(f"--root: {len(missing)} annotated images of {set_name} not found in "
                                f"{' or '.join(map(str, folders))}, e.g. {missing[:3]}")
    return records, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding Set1/ and Set2/")
    parser.add_argument("--out", help="where the manifests go (default: --root)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    out = Path(args.out or args.root)
    for split, set_name in SPLITS.items():
        records, counts = prepare_split(root, set_name, out)
        write_manifest(out / f"{split}.csv", records, CLASSES)
        summary = ", ".join(f"{c} {counts[c]}" for c in CLASSES)
        print(f"{split} ({set_name}): {len(records)} images: {summary}; dropped {counts['dropped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
