"""Deployment without PyTorch: `export_model` writes a checkpoint as ONNX graphs and a manifest
(needs torch), `OnnxPredictor` runs them with numpy and onnxruntime only.

`import msgf.deploy` imports neither: names load on first use (msgf._lazy).
"""
from msgf._lazy import lazy_getattr

_LAZY = {
    "export_model": "msgf.deploy.export",
    "OnnxPredictor": "msgf.deploy.predictor",
    "read_manifest": "msgf.deploy.manifest",
    "ManifestError": "msgf.deploy.manifest",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
