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
    # One unit for the axis, chosen by the largest cost drawn (a small model spends M, not G).
    largest = max([*(front.macs if front is not None else []),
                   *(e["macs"] for r in (geometric.results if geometric is not None else [])
                     for e in r.details.get("per_size", [])),
                   *(m for m, _ in (static or {}).values())], default=1e9)
    scale, unit = next((s, u) for s, u in ((1e9, "G"), (1e6, "M"), (1e3, "K"), (1.0, "")) if largest >= s or s == 1.0)
    figure = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if front is not None:
        axes.plot(front.macs / scale, 100 * front.accuracy, "o-", color="k", lw=2, label=label)
    per_size: dict[int, list[tuple[float, float]]] = {}
    if geometric is not None:
        for result in geometric.results:
            for entry in result.details.get("per_size", []):
                per_size.setdefault(entry["size"], []).append((entry["macs"], entry["accuracy"]))
        for i, (size, points) in enumerate(sorted(per_size.items())):
            macs, accuracy = zip(*sorted(set(points)))
            axes.plot([m / scale for m in macs], [100 * a for a in accuracy], "s--", color=f"C{i}",
                      alpha=0.8, label=f"geometric, {size} px patches")
    for i, (name, (macs, accuracy)) in enumerate((static or {}).items(), start=len(per_size)):
        axes.plot([macs / scale], [100 * accuracy], marker="*", ms=12, ls="none", color=f"C{i % 10}",
                  label=name)
    axes.set_xlabel(f"average MACs per image ({unit})" if unit else "average MACs per image")
    axes.set_ylabel("accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=120)
