"""Datasets over image files: manifests and ImageFolder trees."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from msgf.data import augment as aug
from msgf.data.decode import IMAGE_SUFFIXES, CorruptImageError, check_image_file, decode_image
from msgf.data.manifest import Record


def image_folder_records(root: str | os.PathLike) -> tuple[list[Record], list[str]]:
    """torchvision's ImageFolder layout: root/<class>/<...>/<image>; classes are sorted folder names."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"source: {str(root)!r} has no class folders (expected root/<class>/<image>)")
    # not only regular files: a symlink loop or a FIFO named like an image fails by name when read
    records = [Record(str(f.relative_to(root)), name, np.zeros((0, 4), np.float32))
               for name in classes for f in sorted((root / name).rglob("*"))
               if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir()]
    if not records:
        raise ValueError(f"source: {str(root)!r} holds no images with suffixes {IMAGE_SUFFIXES}")
    return records, classes


def _opens(path: Path) -> bool:
    try:
        check_image_file(path)
        return True
    except CorruptImageError:
        return False


def _some(paths: list[str], most: int = 5) -> str:
    return ", ".join(paths[:most]) + (f" and {len(paths) - most} more" if len(paths) > most else "")


class ImageFileDataset(torch.utils.data.Dataset):
    """Decodes each image once per access into uint8 (H, W, 3); never converts to float.

    augment_kind "road" (brightness/contrast + pan) or "photo" (random-resized-crop + flip)
    applies when `augment` is true. With `image_size`, images are resized to it (boxes too),
    or, for "photo" augmentation, random-resized-cropped to it.

    skip_corrupt: files that cannot even be opened (missing, a directory, a symlink loop, an
    unreadable header, more pixels than msgf.data.decode.MAX_IMAGE_PIXELS) are dropped when the
    dataset is built, named in a warning; files that fail to decode later are replaced by the
    next readable sample, each named in a warning. Without it, the first bad file raises
    CorruptImageError naming it.
    """

    def __init__(self, records: list[Record], classes: list[str], root: str | os.PathLike, *,
                 augment_kind: str, augment: bool = False, image_size: tuple[int, int] | None = None,
                 skip_corrupt: bool = False):
        if augment_kind not in ("road", "photo"):
            raise ValueError(f"augment_kind: expected 'road' or 'photo', got {augment_kind!r}")
        self.root, self.classes = Path(root), list(classes)
        self.augment_kind, self.augment, self.skip_corrupt = augment_kind, bool(augment), bool(skip_corrupt)
        self.image_size = None if image_size is None else tuple(int(v) for v in image_size)
        self._class_index = {name: k for k, name in enumerate(self.classes)}
        self.records = records
        self._skipped: set[str] = set()
        if skip_corrupt:
            opens = [_opens(self._path(r)) for r in records]
            good = [r for r, ok in zip(records, opens) if ok]
            if len(good) < len(records):
                bad = [r.path for r, ok in zip(records, opens) if not ok]
                warnings.warn(f"skip_corrupt: skipped {len(bad)} of {len(records)} files that cannot be opened "
                              f"(under {self.root}): {_some(bad)}", stacklevel=3)
            if not good:
                raise CorruptImageError(f"source: none of the {len(records)} files under {self.root} can be opened")
            self.records = good

    def _path(self, record: Record) -> Path:
        return self.root / record.path

    def __len__(self) -> int:
        return len(self.records)

    @property
    def targets(self) -> list[int]:
        """Every image's class index, read from the records (no image is decoded)."""
        return [self._class_index[record.label] for record in self.records]

    def subset(self, indices) -> ImageFileDataset:
        """The images at `indices`, in that order, read and augmented as this dataset reads
        them (the same classes, augmentation kind and image size)."""
        return ImageFileDataset([self.records[int(i)] for i in indices], self.classes, self.root,
                                augment_kind=self.augment_kind, augment=self.augment, image_size=self.image_size)

    def _load(self, index: int) -> dict:
        record = self.records[index]
        path = self._path(record)
        return {"image": torch.from_numpy(decode_image(path)), "label": self._class_index[record.label],
                "boxes": torch.from_numpy(np.array(record.boxes, np.float32).reshape(-1, 4)), "path": str(path)}

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images")
        for attempt in range(len(self.records)):
            try:
                sample = self._load((index + attempt) % len(self.records))
                break
            except CorruptImageError as error:
                if not self.skip_corrupt:
                    raise
                self._skipped.add(str(self._path(self.records[(index + attempt) % len(self.records)])))
                warnings.warn(f"skip_corrupt: {len(self._skipped)} corrupt file(s) skipped so far ({error})",
                              stacklevel=2)
        else:
            raise CorruptImageError(f"source: every file under {self.root} failed to decode")
        if self.augment and self.augment_kind == "photo":
            return aug.photo_augment(sample, aug.torch_seeded_rng(), self.image_size)
        if self.image_size is not None:
            sample = aug.resize(sample, self.image_size)
        if self.augment:
            sample = aug.road_augment(sample, aug.torch_seeded_rng())
        return sample
