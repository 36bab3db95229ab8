"""Inference with early exits: thresholds (Eq. 9), budgeted and anytime prediction, trajectory export."""
from msgf.engine.predict import Anytime, Predictions, anytime, predict
from msgf.engine.thresholds import EXIT, Thresholds, for_budget
from msgf.engine.trajectories import export_trajectories

__all__ = ["EXIT", "Anytime", "Predictions", "Thresholds", "anytime", "export_trajectories", "for_budget", "predict"]
