"""Split folders and fingerprints: the `DIR/{train,val,test}` layout that the recipes in
`datasets/` and `msgf data synth` write, and a content hash that tells whether two names hold
the same data.

A split folder holds one manifest per split (`train.csv`, `test.csv`, ...; the images may lie
anywhere the rows say), or, without manifests, one ImageFolder tree per split (`train/<class>/`,
`val/<class>/`). Any other folder is an ImageFolder itself. Torch-free.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from msgf.data.decode import IMAGE_SUFFIXES
from msgf.data.manifest import MANIFEST_SUFFIXES

SPLIT_NAMES = ("train", "val", "test")


def split_manifest(folder: Path, name: str) -> Path | None:
    """`folder/name.csv` or `folder/name.jsonl`, whichever exists; ValueError if both do."""
    found = [folder / f"{name}{suffix}" for suffix in MANIFEST_SUFFIXES if (folder / f"{name}{suffix}").is_file()]
    if len(found) > 1:
        raise ValueError(f"source: {str(folder)!r} holds both {found[0].name} and {found[1].name}; "
                         f"name the one to use")
    return found[0] if found else None


def split_files(folder: str | os.PathLike, names: dict[str, str | None]) -> dict[str, Path] | None:
    """The manifest or ImageFolder tree serving each role of `names` (role -> the name the
    recipe writes for it, None for a role the folder never serves), or None when `folder` is not
    a split folder. It is one when it holds the manifest of `names["train"]`, or when its
    subfolders are split names only (SPLIT_NAMES or a name of `names`) and include the training
    one: an ImageFolder whose only classes are "train" and "val" is not worth guessing about."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    train = names.get("train")
    if train is None:
        raise ValueError("names: the training split needs a name")
    if split_manifest(folder, train) is not None:
        found = {role: split_manifest(folder, name) for role, name in names.items() if name is not None}
    else:
        known = set(SPLIT_NAMES) | {name for name in names.values() if name is not None}
        subfolders = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if train not in subfolders or not subfolders <= known:
            return None
        found = {role: folder / name for role, name in names.items() if name is not None and name in subfolders}
    return {role: path for role, path in found.items() if path is not None}


def fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 that is equal for the same data under two names: of a manifest's bytes; of an
    ImageFolder tree's listing (each image's path below the root and its size), which copies
    and links of the tree share, without reading every image."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\t{file.stat().st_size}\n".encode())
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
