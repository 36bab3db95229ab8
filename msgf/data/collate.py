"""Batching samples of msgf datasets without converting pixels to float."""
from __future__ import annotations

import torch


def collate_batch(samples: list[dict]) -> dict:
    """images uint8 (N, H, W, C), labels int64 (N,), boxes list of (K, 4), paths list."""
    if not samples:
        raise ValueError("samples: cannot collate an empty batch")
    shapes = {tuple(s["image"].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"samples: images differ in size {sorted(shapes)}; a batch needs one size "
                         "(pass image_size= to open_dataset, or use batch size 1)")
    return {"images": torch.stack([s["image"] for s in samples]),
            "labels": torch.tensor([int(s["label"]) for s in samples], dtype=torch.int64),
            "boxes": [s["boxes"] for s in samples],
            "paths": [s["path"] for s in samples]}
