"""The report's two plots: accuracy-vs-MACs curves (paper Table 3 / Figure 10) and a grid of
test scenes with the glance and focus boxes, green/red by correctness (paper Figure 12).

matplotlib drives a Figure on the Agg canvas directly (no pyplot state), as threshold_search's
plot_fronts does; the scene panels are msgf.infer.visualize's, tiled into one image.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _unit(largest: float) -> tuple[float, str]:
    return next((s, u) for s, u in ((1e9, "G"), (1e6, "M"), (1e3, "K"), (1.0, "")) if largest >= s or s == 1.0)


def _minor_label(value: float, _position=None) -> str:
    """Label the 2s and 5s of a log axis' minor ticks, as plain numbers."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def curves(path: str | os.PathLike, gfnet: dict[str, list[tuple[float, float]]],
           static: dict[str, tuple[float, float]], *, title: str | None = None,
           dashed: tuple[str, ...] = ()) -> None:
    """gfnet: label -> [(test MACs, test accuracy), ...] drawn as lines (labels in `dashed`
    dashed); static: label -> (MACs, accuracy) drawn as stars. Log MACs axis: the static
    points span two orders of magnitude."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    if not gfnet and not static:
        raise ValueError("curves: nothing to draw")
    largest = max([m for pts in gfnet.values() for m, _ in pts] + [m for m, _ in static.values()])
    scale, unit = _unit(largest)
    figure = Figure(figsize=(7.2, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for i, (label, points) in enumerate(gfnet.items()):
        points = sorted(points)
        bold = label == "MS-GFNet"
        axes.plot([m / scale for m, _ in points], [100 * a for _, a in points], marker="o" if bold else "s",
                  linestyle="-" if bold else (":" if label in dashed else "--"), color="k" if bold else f"C{i}",
                  lw=2 if bold else 1.2, ms=4, alpha=1.0 if bold else 0.85, label=label)
    for i, (label, (macs, accuracy)) in enumerate(static.items()):
        axes.plot([macs / scale], [100 * accuracy], marker="*", ms=13, ls="none", color=f"C{(i + 5) % 10}",
                  label=label)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
    axes.tick_params(axis="x", which="minor", labelsize=7)
    axes.set_xlabel(f"average MACs per image ({unit}, log scale)" if unit else "average MACs per image (log)")
    axes.set_ylabel("test accuracy (%)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="best", fontsize="small")
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=110)


def pick_scenes(labels, count: int, empty_class: int = 0) -> list[int]:
    """The first ceil(count/2) scenes holding a sign, then EMPTY ones, up to `count` in all."""
    labels = [int(v) for v in labels]
    signs = [i for i, v in enumerate(labels) if v != empty_class]
    empty = [i for i, v in enumerate(labels) if v == empty_class]
    chosen = signs[:(count + 1) // 2]
    chosen += empty[:count - len(chosen)]
    chosen += [i for i in signs if i not in chosen][:count - len(chosen)]
    return sorted(chosen)


def scene_grid(path: str | os.PathLike, model, thresholds, images, labels, class_names, panels_dir: Path,
               *, columns: int = 1, boxes=None) -> list[dict]:
    """Run `model` with `thresholds` on the scenes, draw each (msgf.infer.visualize) into
    panels_dir, tile them into `path`; what each scene did, as dicts. `boxes`: each scene's
    annotated object boxes, drawn dotted."""
    from matplotlib.image import imread

    from msgf.data.regions import ArrayImage
    from msgf.infer.predictor import Predictor
    from msgf.infer.visualize import save_figure

    panels_dir = Path(panels_dir)
    panels_dir.mkdir(parents=True, exist_ok=True)
    results = Predictor(model, thresholds=thresholds).predict(images)
    tiles, described = [], []
    boxes = [()] * len(results) if boxes is None else boxes
    for i, (image, label, result, objects) in enumerate(zip(images, labels, results, boxes)):
        panel = panels_dir / f"scene_{i:02d}.png"
        label = int(label)
        save_figure(panel, ArrayImage(np.asarray(image)), result, class_names, label,
                    title=f"scene {i + 1}, {result.macs / 1e6:.1f}M MACs", objects=objects)
        tiles.append(imread(panel)[..., :3])
        described.append({"label": class_names[label], "pred": result.class_name, "exit_step": result.exit_step,
                          "macs": result.macs, "patches": [list(s.box) for s in result.patches]})
    _tile(path, tiles, columns)
    return described


def _tile(path, tiles: list[np.ndarray], columns: int) -> None:
    from matplotlib.image import imsave

    height = max(t.shape[0] for t in tiles)
    width = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    canvas = np.ones((rows * height, columns * width, 3), dtype=np.float32)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        canvas[r * height:r * height + tile.shape[0], c * width:c * width + tile.shape[1]] = tile
    imsave(os.fspath(path), canvas)
