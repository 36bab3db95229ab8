"""What a predictor returns for one image: plain values, shared by the PyTorch `Predictor` and
`msgf.deploy.OnnxPredictor` (so it imports neither torch nor onnxruntime), and the JSON line
`msgf infer` writes for it."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One step of one image: t (1 = glance), input side, box (x0, y0, x1, y1) in image pixels
    (the whole image for the glance), and the prediction and confidence after it."""

    step: int
    size: int
    box: tuple[int, int, int, int]
    pred: int
    confidence: float


@dataclass(frozen=True)
class ImagePrediction:
    """The result for one image: prediction and confidence at the exit step, MACs, every step run."""

    pred: int
    class_name: str
    confidence: float
    exit_step: int
    macs: int
    image_hw: tuple[int, int]
    steps: list[Step] = field(default_factory=list)

    @property
    def patches(self) -> list[Step]:
        """The focus steps (t >= 2)."""
        return self.steps[1:]

    def to_dict(self) -> dict:
        return {"class": self.class_name, "class_index": self.pred, "confidence": self.confidence,
                "exit_step": self.exit_step, "macs": self.macs, "image_size": list(self.image_hw),
                "patches": [{"step": s.step, "size": s.size, "box": list(s.box)} for s in self.patches],
                "steps": [{"step": s.step, "class_index": s.pred, "confidence": s.confidence} for s in self.steps]}
