"""`msgf export`: a checkpoint as ONNX graphs plus a manifest, for deployment without PyTorch
(msgf.deploy: the graphs, and `msgf infer --runtime onnx` / `OnnxPredictor` that run them)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as ONNX graphs and a manifest (for onnxruntime, no torch)",
        description="Export a checkpoint's step functions (glance, crop and focus per patch size, classifier per "
                    "step, policy) as ONNX graphs, checked with onnx.checker, and manifest.json (config, "
                    "normalisation, MACs table, the thresholds of every budget). Run them with "
                    "`msgf infer --runtime onnx DIR ...` or msgf.deploy.OnnxPredictor. Needs msgf[deploy].")
    parser.add_argument("checkpoint", metavar="CKPT", type=Path, help="checkpoint written by msgf train")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write the export to")
    parser.set_defaults(func=run)


def run(args) -> int:
    try:
        from msgf.deploy.export import export_model
    except ImportError as error:
        print(f"msgf export: error: {error.name or error} is not installed; install msgf[deploy] "
              f"(onnx, onnxruntime, onnxscript)", file=sys.stderr)
        return 2
    from msgf.checkpoint import CheckpointError

    try:
        manifest = export_model(args.checkpoint, args.out)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"msgf export: error: {error}", file=sys.stderr)
        return 2
    graphs = manifest["graphs"]
    count = 3 + len(graphs["crop"]) + len(graphs["focus_encoder"]) + len(graphs["classify"])
    print(json.dumps({"out": str(args.out), "graphs": count, "thresholds": len(manifest["thresholds"]),
                      "export_seconds": manifest["export_seconds"]}))
    return 0
