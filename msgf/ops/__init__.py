"""The crop-and-resize operator and its convenience wrappers."""
from msgf.ops.boxes import focus_boxes
from msgf.ops.crop import CropResult, backends, crop_resize, glance

__all__ = ["CropResult", "backends", "crop_resize", "focus_boxes", "glance"]
