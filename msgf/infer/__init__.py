"""Inference on real images: `Predictor` for pipelines, input discovery and figures for `msgf infer`."""
from msgf.infer.predictor import ImagePrediction, Predictor, Step

__all__ = ["ImagePrediction", "Predictor", "Step"]
