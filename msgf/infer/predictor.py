"""`Predictor`: a checkpoint at a chosen budget, ready for pipelines (DataLoaders, web handlers).

One lock guards the model, so a Predictor can be shared by threads; everything else a call
uses is local to the call and dropped when it returns (see `_release_memory`, after large calls).
"""
from __future__ import annotations

import os
import threading

import numpy as np
import torch

from msgf.data.regions import as_arrays
from msgf.engine import ImageBatch, Predictions, Thresholds, choose_thresholds, predict_from
from msgf.engine.regions import RegionSource, patch_box
from msgf.infer.results import ImagePrediction, Step
from msgf.infer.streaming import RegionStreaming
from msgf.memory import release_memory
from msgf.models.inference import inference_copy

# Calls whose images hold at least this many decoded bytes give their freed memory back when
# they return. Giving it back (malloc_trim walks the heap) costs about 2 ms, a twentieth of a
# one-scene call on 2 cores, and smaller calls leave the next one only a few MB to reuse.
RELEASE_AFTER_BYTES = 16 * 2**20


class Predictor(RegionStreaming):
    """`Predictor(ckpt, budget="1.5G")` or `Predictor(ckpt, thresholds=...)`.

    ckpt: a checkpoint path (msgf.load_checkpoint) or a GFNet in eval mode. budget: MACs per
    image (number or "1.5G") whose thresholds the checkpoint stores (`msgf search-thresholds`).
    thresholds: msgf.engine.Thresholds or a JSON file (its to_json(), a threshold_search Result
    or Front, or the report `msgf search-thresholds --out` writes); with several budgets in the
    file, `budget` picks one. With neither, the checkpoint's thresholds if it stores one set.
    """

    def __init__(self, ckpt, *, budget=None, thresholds=None, device: str | torch.device = "cpu"):
        from msgf.models.gfnet import GFNet

        _check_threshold_args(budget, thresholds)  # before loading: a usage error should not wait for it
        if isinstance(ckpt, GFNet):
            if ckpt.training:
                raise ValueError("ckpt: the model is in training mode; call model.eval() first")
            self.model = ckpt
        elif isinstance(ckpt, (str, os.PathLike)):
            from msgf.checkpoint import load_checkpoint

            self.model = load_checkpoint(ckpt, map_location=device)
        else:
            raise TypeError(f"ckpt: expected a checkpoint path or a GFNet, got {type(ckpt).__name__}")
        self.thresholds = choose_thresholds(self.model, budget=budget, thresholds=thresholds)
        # BatchNorm folded into the convolutions (a copy: a model passed in stays as it was)
        self.model = inference_copy(self.model)
        cfg = self.model.config
        self.class_names = list(cfg.class_names) or [str(k) for k in range(cfg.num_classes)]
        self._lock = threading.Lock()

    @property
    def config(self):
        return self.model.config

    def predict(self, images) -> list[ImagePrediction]:
        """Decoded images: a uint8 (N, H, W, C) array/tensor, or a list of uint8 (H, W, C) arrays
        of any sizes (C = 3; 1 and 4 are made RGB). Equal RGB sizes run as one batch exactly as
        msgf.engine.predict does; otherwise through the region path over in-memory readers, which
        gives each image's results alone (up to last-bit rounding of batched matrix products)."""
        from msgf.data.regions import ArrayImage

        batch = _rgb_batch(images)
        if batch is not None:  # already one uint8 RGB batch: no copy into a new one
            return self._run(ImageBatch(batch.to(self._device())), [tuple(batch.shape[1:3])] * len(batch))
        arrays = _as_arrays(images)
        image_hw = [a.shape[:2] for a in arrays]
        if len({a.shape for a in arrays}) == 1 and arrays[0].shape[2] == 3:
            return self._run(ImageBatch(torch.from_numpy(np.stack(arrays)).to(self._device())), image_hw)
        return self.predict_regions([ArrayImage(a) for a in arrays])

    def predict_regions(self, readers) -> list[ImagePrediction]:
        """Region readers (msgf.data.regions.open_image, or anything with .shape, .read_region and
        .read_glance): the glance and each focus patch are read as regions, never the whole image."""
        source = RegionSource(readers)
        return self._run(source, source.image_hw)

    def _run(self, source, image_hw) -> list[ImagePrediction]:
        try:
            with self._lock:
                out = predict_from(self.model, source, self.thresholds)
            return self._results(out, image_hw)
        finally:
            del source
            if sum(h * w * 3 for h, w in image_hw) >= RELEASE_AFTER_BYTES:
                _release_memory()

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _results(self, out: Predictions, image_hw) -> list[ImagePrediction]:
        out = Predictions(**{name: values.cpu() for name, values in vars(out).items()})
        glance = self.config.glance_size
        results = []
        for i, hw in enumerate(image_hw):
            hw = tuple(int(v) for v in hw)
            steps = [Step(1, glance, (0, 0, hw[1], hw[0]), int(out.step_pred[i, 0]), float(out.step_conf[i, 0]))]
            for t in range(2, int(out.exit_step[i]) + 1):
                side = int(out.sizes[i, t - 1])
                steps.append(Step(t, side, patch_box(out.locs[i, t - 1], side, hw), int(out.step_pred[i, t - 1]),
                                  float(out.step_conf[i, t - 1])))
            pred = int(out.pred[i])
            results.append(ImagePrediction(pred=pred, class_name=self.class_names[pred],
                                           confidence=float(out.conf[i]), exit_step=int(out.exit_step[i]),
                                           macs=int(out.macs[i]), image_hw=hw, steps=steps))
        return results


def _check_threshold_args(budget, thresholds) -> None:
    if thresholds is not None and not isinstance(thresholds, (Thresholds, str, os.PathLike)):
        raise TypeError(f"thresholds: expected msgf.engine.Thresholds or a JSON path, got {type(thresholds).__name__}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (str, int, float))):
        raise TypeError(f"budget: expected MACs as a number or a string like '1.5G', got {type(budget).__name__}")


def _rgb_batch(images) -> torch.Tensor | None:
    """`images` as a contiguous tensor when it is a non-empty uint8 (N, H, W, 3) array or tensor."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images) if images.dtype == np.uint8 and images.flags.writeable else None
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 or \
            images.shape[-1] != 3 or 0 in images.shape:
        return None
    return images.detach().contiguous()


def _as_arrays(images) -> list[np.ndarray]:
    """msgf.data.regions.as_arrays, with torch tensors (a batch or list items) taken as arrays."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    elif isinstance(images, (list, tuple)):
        images = [i.detach().cpu().numpy() if isinstance(i, torch.Tensor) else i for i in images]
    return as_arrays(images)


def _release_memory() -> None:
    """Freed batch memory back to the system, and CUDA's cached blocks back to the device."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    release_memory()
