"""The book's image grid (D2L §3.5.1 ``show_images``) as a figure object that can be saved.

Uses matplotlib's object API (``Figure``, not pyplot), so it never needs a display and never
keeps figures alive in a global registry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from divekit.io import atomic_open


def show_images(
    images: torch.Tensor,
    num_rows: int,
    num_cols: int,
    titles: Sequence[str] | None = None,
    scale: float = 1.5,
) -> Figure:
    """A ``num_rows`` x ``num_cols`` grid of images with optional titles and hidden axes.

    Args:
        images: (N, 1 or 3, H, W) or (N, H, W); uint8, or float in [0, 1]. The first
            ``num_rows * num_cols`` images are drawn; cells beyond N stay empty.
        titles: one title per drawn image, shown above it.
        scale: inches per grid cell.
    """
    if num_rows < 1 or num_cols < 1:
        raise ValueError(f"the grid needs at least one row and column, got {num_rows}x{num_cols}")
    pictures = _as_display_images(images)
    num_drawn = min(len(pictures), num_rows * num_cols)
    if titles is not None and len(titles) < num_drawn:
        raise ValueError(f"{num_drawn} images are drawn but only {len(titles)} titles were given")
    fig = Figure(figsize=(num_cols * scale, num_rows * scale), layout="constrained")
    axes = fig.subplots(num_rows, num_cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= num_drawn:
            continue
        picture = pictures[i].numpy()
        if picture.ndim == 2:
            ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(picture)
        if titles is not None:
            ax.set_title(titles[i], parse_math=False)  # a class or file name with $ is text, not TeX
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG file atomically (never a half-written image). Returns ``path``."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _as_display_images(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] as (N, H, W) for grayscale or (N, H, W, 3) for color."""
    images = torch.as_tensor(images).detach().cpu()
    if images.ndim == 4:
        channels = images.shape[1]
        if channels == 1:
            images = images[:, 0]
        elif channels == 3:
            images = images.permute(0, 2, 3, 1)
        else:
            raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    elif images.ndim != 3:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255
    return images.float().clamp(0.0, 1.0)
