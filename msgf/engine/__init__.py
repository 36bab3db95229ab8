"""Inference with early exits: thresholds (Eq. 9), budgeted and anytime prediction, trajectory export."""
from msgf.engine.predict import Anytime, ImageBatch, Predictions, anytime, predict, predict_from
from msgf.engine.thresholds import EXIT, Thresholds, choose_thresholds, for_budget
from msgf.engine.trajectories import export_trajectories

__all__ = ["EXIT", "Anytime", "ImageBatch", "Predictions", "Thresholds", "anytime", "choose_thresholds",
           "export_trajectories", "for_budget", "predict", "predict_from"]
