"""Data paths: the built-in procedural scenes, manifests, ImageFolder trees, region readers.

Every dataset here yields dicts {"image": uint8 (H, W, C) tensor, "label": int,
"boxes": float32 (K, 4) tensor of (x0, y0, x1, y1) pixels, "path": str or None} and has
`.classes`. Pixels stay uint8 until the crop op normalises them (design.md section 4).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from msgf.data.decode import CorruptImageError, ImageTooLargeError, decode_image
from msgf.data.manifest import MANIFEST_SUFFIXES, Record, read_manifest, write_manifest

if TYPE_CHECKING:
    import torch.utils.data

__all__ = ["open_dataset", "collate_batch", "CorruptImageError", "ImageTooLargeError", "decode_image", "Record",
           "read_manifest", "write_manifest"]


def open_dataset(source: str, split: str = "train", *, seed: int = 0, augment: bool = False,
                 num_samples: int | None = None, image_size: tuple[int, int] | None = None,
                 skip_corrupt: bool = False) -> torch.utils.data.Dataset:
    """Open a dataset by name or path.

    source: "synthsigns" (generated on the fly; split train/val/test; image_size (H, W),
      default (960, 1280); num_samples per split, default 20000/2000/2000), a manifest
      (.csv/.jsonl; `split` is ignored, one manifest per split), an ImageFolder directory, or
      a split folder (`DIR/<split>.csv` or `DIR/<split>/<class>/`, as the recipes in datasets/
      and `msgf data synth` write it): then `split` picks its manifest or tree.
    augment: train-time augmentation. Road scenes (synthsigns, and manifests whose rows carry
      boxes) get brightness/contrast + panning; photos (ImageFolder, manifests without boxes)
      get random-resized-crop + flip.
    num_samples: for files, keeps the first num_samples images (handy for smoke runs).
    image_size: for files, resize every image to (H, W) (boxes follow), so they can batch.
    skip_corrupt: skip unreadable files with a warning instead of raising.
    """
    from msgf.data import synthsigns
    from msgf.data.augment import road_augment
    from msgf.data.files import ImageFileDataset, image_folder_records
    from msgf.data.layout import SPLIT_NAMES, split_files

    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source: expected 'synthsigns' or a path, got {type(source).__name__}")
    if image_size is not None and (len(tuple(image_size)) != 2 or min(int(v) for v in image_size) < 1):
        raise ValueError(f"image_size: expected (height, width) of positive ints, got {image_size!r}")
    if num_samples is not None and int(num_samples) < 1:
        raise ValueError(f"num_samples: must be >= 1, got {num_samples}")
    if str(source) == "synthsigns":
        return synthsigns.SynthSigns(split, seed=seed, num_samples=num_samples, image_size=image_size,
                                     transform=road_augment if augment else None)
    path = Path(source)
    folders = split_files(path, {name: name for name in SPLIT_NAMES})
    if folders is not None:
        if split not in folders:
            raise ValueError(f"split: {str(path)!r} is a split folder holding {sorted(folders)}, no {split!r}")
        path = folders[split]
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        records, classes = read_manifest(path)
        root = path.parent
        if not records:
            raise ValueError(f"source: manifest {str(path)!r} lists no images")
    elif path.is_dir():
        records, classes = image_folder_records(path)
        root = path
    else:
        raise ValueError(f"source: expected 'synthsigns', a manifest ({', '.join(MANIFEST_SUFFIXES)}) "
                         f"or an ImageFolder directory, got {str(source)!r}")
    if num_samples is not None:
        records = records[:int(num_samples)]
    kind = "road" if any(len(r.boxes) for r in records) else "photo"
    return ImageFileDataset(records, classes, root, augment_kind=kind, augment=augment,
                            image_size=image_size, skip_corrupt=skip_corrupt)


def __getattr__(name: str):
    # torch-dependent names load on first use, so `import msgf.data.regions` stays torch-free
    if name == "collate_batch":
        from msgf.data.collate import collate_batch

        return collate_batch
    raise AttributeError(f"module 'msgf.data' has no attribute {name!r}")
