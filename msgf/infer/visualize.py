"""Where the model looked: one PNG per image in the style of the paper's Figure 12.

One panel per step run: the glance, then the image with the focus boxes so far (the newest
solid, earlier ones dashed, each numbered by its step), titled with the prediction and its
confidence after that step. With a known label, green marks a step whose prediction is right
and red one that is wrong. Annotated object boxes, where given, are drawn dotted in cyan
on every panel, so a reader sees whether a patch found the object.
"""
from __future__ import annotations

import os

from msgf.data.regions import as_rgb
from msgf.infer.results import ImagePrediction

RIGHT, WRONG, UNKNOWN = "#1a9850", "#d73027", "#fdae61"
ANNOTATED = "#00e5ff"  # cyan: apart from the green/red patches on any scene
DISPLAY_SIDE = 320  # longest side of each panel's thumbnail, in pixels


def save_figure(path: str | os.PathLike, reader, result: ImagePrediction, class_names: list[str],
                label: int | None = None, title: str | None = None, objects=()) -> None:
    """Write the figure for `result` (from `reader`, whose thumbnail is read as a glance) to `path`;
    `objects`: annotated (x0, y0, x1, y1) boxes in image pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    height, width = result.image_hw
    scale = DISPLAY_SIDE / max(height, width)
    thumb = as_rgb(reader.read_glance(max(1, round(height * scale)), max(1, round(width * scale))), str(path))
    panels = len(result.steps)
    aspect = height / width
    figure = Figure(figsize=(2.8 * panels, 2.8 * aspect + 0.9), layout="constrained")
    FigureCanvasAgg(figure)

    def colour(step) -> str:
        return UNKNOWN if label is None else (RIGHT if step.pred == label else WRONG)

    for k, step in enumerate(result.steps):
        axes = figure.add_subplot(1, panels, k + 1)
        # the thumbnail spans the image's pixel extent, so boxes are drawn in image pixels
        axes.imshow(thumb, extent=(0, width, height, 0), interpolation="bilinear")
        for x0, y0, x1, y1 in (tuple(float(v) for v in box) for box in objects):
            axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=ANNOTATED,
                                     linewidth=1.8, linestyle=":"))
        for earlier in result.steps[1:k + 1]:
            x0, y0, x1, y1 = earlier.box
            newest = earlier is step
            axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour(earlier),
                                     linewidth=2.5 if newest else 1.2, linestyle="-" if newest else "--"))
            axes.text(x0, y0, str(earlier.step), color="white", fontsize=8, fontweight="bold", va="bottom",
                      bbox=dict(facecolor=colour(earlier), edgecolor="none", pad=1.0))
        what = "glance" if step.step == 1 else f"step {step.step}: {step.size} px"
        axes.set_title(f"{what}\n{class_names[step.pred]}  {step.confidence:.2f}", fontsize=9,
                       color="black" if label is None else colour(step))
        axes.set_xticks([])
        axes.set_yticks([])
    if title:
        truth = "" if label is None else f"  (label: {class_names[label]})"
        figure.suptitle(f"{title}{truth}", fontsize=9)
    figure.savefig(path, dpi=100)
