"""The manifest of an ONNX export (msgf.deploy.export): reading and checking it needs json only."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

FORMAT = "msgf-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """The directory is not a usable msgf ONNX export."""


def read_manifest(directory: str | os.PathLike) -> dict:
    """The manifest of the export in `directory`, checked for the fields the runtime reads."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory: expected a path, got {type(directory).__name__}")
    root = Path(directory)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise FileNotFoundError(f"directory: {root} is not a directory (an `msgf export` output)")
    if not path.is_file():
        raise ManifestError(f"{root}: no {MANIFEST_NAME}; is this an `msgf export` output (the manifest is written "
                            f"last, so an interrupted export has none)?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{path}: not an msgf ONNX manifest (no '{FORMAT}' format marker)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: manifest version {manifest.get('format_version')!r}, this msgf reads "
                            f"{FORMAT_VERSION}; export the checkpoint again")
    missing = [k for k in ("config", "step_macs", "thresholds", "graphs", "shapes") if k not in manifest]
    if missing:
        raise ManifestError(f"{path}: missing {missing}")
    cfg = manifest["config"]
    for name in [manifest["graphs"]["glance"], manifest["graphs"]["glance_encoder"], manifest["graphs"]["policy"],
                 *manifest["graphs"]["crop"].values(), *manifest["graphs"]["focus_encoder"].values(),
                 *manifest["graphs"]["classify"]]:
        if not (root / name).is_file():
            raise ManifestError(f"{root}: graph {name} named by the manifest is missing")
    if len(manifest["graphs"]["classify"]) != cfg["T"] or len(manifest["step_macs"]) != cfg["T"]:
        raise ManifestError(f"{path}: expected one classifier graph and one MACs row per step (T={cfg['T']})")
    return manifest


def eta_of(thresholds: dict):
    """eta as float64 thresholds for the rule c >= eta from a Thresholds.to_dict() entry ("inf" /
    "-inf" strings allowed, NaN not); an entry without "rule", written before it existed, meant
    c > eta and is converted to the same decisions (threshold_search.rule)."""
    from threshold_search.rule import LEGACY_RULE, to_exit_rule

    rows = [[float(v) for v in row] for row in thresholds["eta"]]
    if any(math.isnan(v) for row in rows for v in row):
        raise ManifestError("thresholds eta must not be NaN")
    return to_exit_rule(rows, thresholds.get("rule", LEGACY_RULE))
