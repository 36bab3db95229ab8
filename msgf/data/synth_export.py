"""Write the procedural speed-limit scenes to disk as JPEG files plus a manifest."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from msgf.data.manifest import Record, write_manifest
from msgf.data.synthsigns import CLASSES, render_scene, scene_rng

JPEG_QUALITY = 95


def parse_size(text: str) -> tuple[int, int]:
    """'960x1280' -> (960, 1280): height x width."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size: expected HEIGHTxWIDTH such as 960x1280, got {text!r}") from None
    return height, width


def _write_one(job: tuple[str, int, int, tuple[int, int], str]) -> Record:
    split, index, seed, size, path = job
    scene = render_scene(index, split, seed, size)
    Image.fromarray(scene.image).save(path, format="JPEG", quality=JPEG_QUALITY)
    boxes = np.zeros((0, 4), np.float32) if scene.box is None else scene.box[None]
    return Record(os.path.join(split, os.path.basename(path)), CLASSES[scene.label], boxes)


def write_synthsigns(out: str | os.PathLike, split: str, num: int, size: tuple[int, int], seed: int = 0,
                     workers: int = 1, progress: bool = True) -> Path:
    """Scenes 0..num-1 of `split` as out/<split>/<index>.jpg and out/<split>.csv; returns the manifest."""
    scene_rng(split, 0, seed)  # validates split and seed before any work
    if num < 1:
        raise ValueError(f"num: must be >= 1, got {num}")
    folder = Path(out) / split
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(split, i, seed, tuple(size), str(folder / f"{i:06d}.jpg")) for i in range(num)]
    bar = dict(total=num, desc=f"synthsigns {split}", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            records = list(tqdm(pool.map(_write_one, jobs, chunksize=8), **bar))
    else:
        records = [_write_one(job) for job in tqdm(jobs, **bar)]
    manifest = Path(out) / f"{split}.csv"
    write_manifest(manifest, records, CLASSES)
    return manifest
