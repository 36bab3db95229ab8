"""Accuracy-vs-MACs curves: the GA front, the geometric baseline per fixed size, static points.

matplotlib is imported inside the function (it is an optional dependency) and drives a Figure
with the Agg canvas directly, so plotting never touches pyplot's global state or backend.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from threshold_search.search import Front


def plot_fronts(path: str | os.PathLike, front: Front | None = None, geometric: Front | None = None,
                static: Mapping[str, tuple[float, float]] | None = None, *,
                label: str = "MS-GFNet (GA thresholds)", title: str | None = None) -> None:
    """Write a PNG (or any format matplotlib infers from `path`).

    `front` is the searched curve (drawn with `label`); `geometric` is a Front from
    method="geometric", whose per-size details give one curve per fixed size; `static` maps a
    label to (MACs, accuracy) of a fixed-input backbone.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("plot_fronts needs matplotlib: pip install 'threshold-search[plot]'") from error
    if front is None and geometric is None and not static:
        raise ValueError("plot_fronts: nothing to draw; give front, geometric or static")
    figure = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if front is not None:
        axes.plot(front.macs / 1e9, 100 * front.accuracy, "o-", color="k", lw=2, label=label)
    per_size: dict[int, list[tuple[float, float]]] = {}
    if geometric is not None:
        for result in geometric.results:
            for entry in result.details.get("per_size", []):
                per_size.setdefault(entry["size"], []).append((entry["macs"], entry["accuracy"]))
        for i, (size, points) in enumerate(sorted(per_size.items())):
            macs, accuracy = zip(*sorted(set(points)))
            axes.plot([m / 1e9 for m in macs], [100 * a for a in accuracy], "s--", color=f"C{i}",
                      alpha=0.8, label=f"geometric, {size} px patches")
    for i, (name, (macs, accuracy)) in enumerate((static or {}).items(), start=len(per_size)):
        axes.plot([macs / 1e9], [100 * accuracy], marker="*", ms=12, ls="none", color=f"C{i % 10}",
                  label=name)
    axes.set_xlabel("average MACs per image (G)")
    axes.set_ylabel("accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=120)
