"""Inference on real images: `Predictor` for pipelines, input discovery and figures for `msgf infer`.

Names load on first use (msgf._lazy): the torch-free parts (inputs, stream, results) must stay
importable without torch, for msgf.deploy's onnxruntime predictor.
"""
from msgf._lazy import lazy_getattr

_LAZY = {
    "ImagePrediction": "msgf.infer.results",
    "Step": "msgf.infer.results",
    "Predictor": "msgf.infer.predictor",
}

__all__ = ["ImagePrediction", "Predictor", "Step"]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
