"""MS-GFNet models: backbone registry, heads, the step API and compute accounting."""
from msgf.models.backbones import Backbone, available_backbones, build_backbone, default_classifier
from msgf.models.config import GFConfig
from msgf.models.gfnet import GFNet, build_model
from msgf.models.state import GFState, Proposal

__all__ = ["Backbone", "GFConfig", "GFNet", "GFState", "Proposal", "available_backbones", "build_backbone",
           "build_model", "default_classifier"]
