"""Boxes on images (D2L §13.3-§13.7: ``bbox_to_rect``, ``show_bboxes``, SSD's ``display``), drawn
without a display, like :mod:`divekit.viz.images`.

Boxes are corner boxes (x1, y1, x2, y2): in pixels for :func:`show_bboxes` (the book's), relative to
the image for :func:`show_detections`, which scales them itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from divekit.viz.images import _as_display_images

COLORS = ("b", "g", "r", "m", "c")  # the book's cycle


def bbox_to_rect(bbox: Sequence[float], color: str, linestyle: str = "-") -> Rectangle:
    """A corner box (x1, y1, x2, y2) in pixels as matplotlib's ((x1, y1), width, height) rectangle (D2L §13.3)."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2, linestyle=linestyle)


def show_bboxes(ax: Axes, bboxes: torch.Tensor | Sequence, labels: Sequence[str] | str | None = None,
                colors: Sequence[str] | str | None = None, linestyle: str = "-") -> None:
    """Draw corner boxes (N, 4) in pixels on ``ax``, each with its label at its upper-left corner in
    a patch of the box's colour (D2L §13.4.1); colours cycle through ``colors``."""
    labels = [labels] if isinstance(labels, str) else list(labels or [])
    colors = [colors] if isinstance(colors, str) else list(colors or COLORS)
    for i, bbox in enumerate(torch.as_tensor(bboxes).detach().cpu().reshape(-1, 4)):
        color = colors[i % len(colors)]
        rect = bbox_to_rect(bbox, color, linestyle)
        ax.add_patch(rect)
        if i < len(labels):
            text_color = "k" if color == "w" else "w"
            ax.text(rect.get_x(), rect.get_y(), labels[i], va="center", ha="center", fontsize=7, color=text_color,
                    parse_math=False,  # a class name with $ is text, not TeX
                    bbox=dict(facecolor=color, lw=0))


def show_detections(images: torch.Tensor, preds: Sequence[dict], classes: Sequence[str], *, threshold: float = 0.5,
                    targets: Sequence[dict] | None = None, num_cols: int = 4, scale: float = 2.5,
                    title: str | None = None) -> Figure:
    """A grid of images (N, 3, H, W) with their detections ``preds`` (per image a dict of relative
    ``boxes``, ``scores``, ``labels``) scoring at least ``threshold``, labelled "class score" as the
    book's ``display`` (D2L §13.7.3), and, if given, the ground truth ``targets`` dashed in white."""
    pictures = _as_display_images(images)
    if len(preds) != len(pictures) or (targets is not None and len(targets) != len(pictures)):
        raise ValueError(f"{len(pictures)} images need as many predictions and targets, got {len(preds)} and "
                         f"{'none' if targets is None else len(targets)}")
    num_cols = max(1, min(num_cols, len(pictures)))
    num_rows = max(1, -(-len(pictures) // num_cols))
    fig = Figure(figsize=(num_cols * scale, num_rows * scale), layout="constrained")
    axes = fig.subplots(num_rows, num_cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for i, (ax, picture, pred) in enumerate(zip(axes, pictures, preds)):
        H, W = picture.shape[:2]
        pixels = torch.tensor([W, H, W, H], dtype=torch.float32)
        ax.imshow(picture.numpy(), cmap="gray" if picture.dim() == 2 else None)
        ax.set_autoscale_on(False)  # boxes reaching past the image do not widen it
        if targets is not None:
            show_bboxes(ax, targets[i]["boxes"].detach().cpu().float() * pixels, colors="w", linestyle="--")
        keep = pred["scores"].detach().cpu() >= threshold
        labels = [f"{classes[int(c)]} {float(s):.2f}" if len(classes) > 1 else f"{float(s):.2f}"
                  for c, s in zip(pred["labels"][keep].tolist(), pred["scores"][keep].tolist())]
        colors = [COLORS[int(c) % len(COLORS)] for c in pred["labels"][keep].tolist()]
        show_bboxes(ax, pred["boxes"][keep].detach().cpu().float() * pixels, labels, colors or None)
    if title:
        fig.suptitle(title, parse_math=False)
    return fig
