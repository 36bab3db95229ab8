"""What `msgf infer` reads: image files, directories of them, or manifests (which carry labels)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from msgf.data.decode import IMAGE_SUFFIXES
from msgf.data.manifest import MANIFEST_SUFFIXES, read_manifest
from msgf.data.regions import TIFF_SUFFIXES

SUFFIXES = tuple(sorted(set(IMAGE_SUFFIXES) | set(TIFF_SUFFIXES)))


@dataclass(frozen=True)
class InputImage:
    path: str
    label: str | None = None  # class name, where a manifest gives one


def collect_inputs(paths) -> list[InputImage]:
    """Files as given (a missing or unreadable one fails later, by name, without stopping the
    run), directories searched recursively for image suffixes in sorted order, manifests row by
    row with their labels (paths relative to the manifest's folder). In a directory, anything
    named like an image but a directory is taken (a symlink loop, a dangling link, a FIFO), so
    that it is reported by name rather than passed over; symlinked directories are not followed."""
    if isinstance(paths, (str, os.PathLike)) or not hasattr(paths, "__iter__"):
        raise TypeError(f"paths: expected a list of paths, got {type(paths).__name__}")
    found = []
    for given in paths:
        path = Path(given)
        if path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            records, _ = read_manifest(path)
            found += [InputImage(str(path.parent / r.path), r.label) for r in records]
        elif path.is_dir():
            found += [InputImage(str(f)) for f in sorted(path.rglob("*"))
                      if f.name.lower().endswith(SUFFIXES) and not f.is_dir()]
        else:
            found.append(InputImage(str(path)))
    return found
