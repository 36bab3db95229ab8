"""msgf: Multi-Scale Glance-and-Focus Networks for cheap high-resolution recognition."""

from msgf._lazy import lazy_getattr

__version__ = "0.1.0"

# Public names -> the module defining them. Imported on first use so that `import msgf`
# (and the CLI's --help) stays cheap: torch and torchvision load only when needed.
_LAZY = {
    "build_model": "msgf.models.gfnet",
    "GFNet": "msgf.models.gfnet",
    "save_checkpoint": "msgf.checkpoint",
    "load_checkpoint": "msgf.checkpoint",
    "read_checkpoint": "msgf.checkpoint",
    "CheckpointError": "msgf.checkpoint",
    "Predictor": "msgf.infer.predictor",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
