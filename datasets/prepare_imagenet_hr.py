"""ImageNet -> the high-resolution variants of the GFNet paper (384 or 480 px).

    python datasets/prepare_imagenet_hr.py --src IMAGENET --size 384 --out DIR [--workers 8]

Every image of IMAGENET/{train,val}/<wnid>/ is resized so that its shorter side is
round(size / 0.875) (bicubic, antialiased), centre-cropped to size x size and written as
DIR/<split>/<wnid>/<stem>.jpg (JPEG quality 95). Runs on a process pool with a progress bar.
Resumable: a finished output is skipped (outputs are written to a temporary name and renamed,
so a killed run never leaves a half-written file that looks finished). Writes DIR/<split>.csv
manifests and DIR/classes.txt. Source files that fail to decode are listed and the exit status
is 1; they are left out of the manifests.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from msgf.data.decode import IMAGE_SUFFIXES, CorruptImageError, decode_image
from msgf.data.manifest import Record, write_manifest

SPLITS = ("train", "val")
CROP_FRACTION = 0.875


def resize_centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to round(size / 0.875), then the centre size x size."""
    height, width = image.shape[:2]
    short = round(size / CROP_FRACTION)
    scale = short / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = Image.fromarray(image).resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)))


def convert(job: tuple[str, str, int]) -> str | None:
    """Convert one file; returns an error message or None."""
    src, dst, size = job
    if os.path.exists(dst):
        return None
    try:
        out = resize_centre_crop(decode_image(src), size)
    except CorruptImageError as error:
        return str(error)
    tmp = dst + ".tmp"
    Image.fromarray(out).save(tmp, format="JPEG", quality=95)
    os.replace(tmp, dst)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="ImageNet root holding train/ and/or val/ class folders")
    parser.add_argument("--size", type=int, required=True, choices=(384, 480))
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    splits = [s for s in SPLITS if (src / s).is_dir()]
    if not splits:
        parser.error(f"--src: {src} has neither train/ nor val/")
    classes = sorted({d.name for s in splits for d in (src / s).iterdir() if d.is_dir()})
    jobs, rows = [], {s: [] for s in splits}
    for split in splits:
        for wnid in sorted(d.name for d in (src / split).iterdir() if d.is_dir()):
            (out / split / wnid).mkdir(parents=True, exist_ok=True)
            for f in sorted((src / split / wnid).iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    dst = out / split / wnid / (f.stem + ".jpg")
                    jobs.append((str(f), str(dst), args.size))
                    rows[split].append((dst, wnid))
    failures = []
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        results = pool.map(convert, jobs, chunksize=16)
        for job, error in zip(jobs, tqdm(results, total=len(jobs), disable=args.no_progress, desc="imagenet_hr")):
            if error is not None:
                failures.append(job[0])
                print(error, file=sys.stderr)
    failed_sources = set(failures)
    failed = {Path(j[1]) for j in jobs if j[0] in failed_sources}
    for split in splits:
        records = [Record(os.path.relpath(dst, out), wnid, np.zeros((0, 4), np.float32))
                   for dst, wnid in rows[split] if dst not in failed]
        write_manifest(out / f"{split}.csv", records, classes)
        print(f"{split}: {len(records)} images, {len({w for _, w in rows[split]})} classes")
    if failures:
        print(f"{len(failures)} source files could not be decoded (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
