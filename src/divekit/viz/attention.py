"""Attention weights as heatmaps (D2L §10.1 ``show_heatmaps``) and kernel regression plots (D2L §10.2),
drawn without a display.

Uses matplotlib's object API (``Figure``, not pyplot), like :mod:`divekit.viz.images`. Feed it the
``attention_weights`` an attention layer records (``record_weights = True``): (B, Q, K) from
additive or dot-product attention as ``w[None]``, (B, H, Q, K) from multi-head attention as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.colors import Normalize
from matplotlib.figure import Figure


def show_heatmaps(
    matrices: torch.Tensor,
    xlabel: str,
    ylabel: str,
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] = (2.5, 2.5),
    cmap: str = "Reds",
) -> Figure:
    """A grid of heatmaps with one shared colour bar.

    Args:
        matrices: (rows, cols, Q, K), e.g. (batch, heads, queries, keys); one heatmap per (row, col),
            queries down and keys across.
        xlabel, ylabel: written under the bottom row and left of the first column.
        titles: one per column.
        figsize: of the whole figure, in inches (the book's default).
        cmap: a matplotlib colour map name.

    All heatmaps share one colour scale (the smallest to the largest entry over all of them), so
    the single colour bar reads right for every cell; d2l scales each cell on its own.
    """
    matrices = torch.as_tensor(matrices).detach().cpu().float()
    if matrices.dim() != 4:
        raise ValueError(f"show_heatmaps takes matrices (rows, cols, Q, K), got shape {tuple(matrices.shape)}; "
                         "add axes with matrices[None, None] for a single map")
    num_rows, num_cols = matrices.shape[:2]
    if titles is not None and len(titles) != num_cols:
        raise ValueError(f"titles must have one entry per column ({num_cols}), got {len(titles)}")
    norm = Normalize(vmin=matrices.min().item(), vmax=matrices.max().item())
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(num_rows, num_cols, sharex=True, sharey=True, squeeze=False)
    for i in range(num_rows):
        for j in range(num_cols):
            ax = axes[i, j]
            image = ax.imshow(matrices[i, j].numpy(), cmap=cmap, norm=norm)
            if i == num_rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None:
                ax.set_title(titles[j])
    fig.colorbar(image, ax=axes, shrink=0.6)
    return fig


def plot_kernel_regression(x_test: torch.Tensor, y_truth: torch.Tensor, y_hat: torch.Tensor, x_train: torch.Tensor,
                           y_train: torch.Tensor) -> Figure:
    """The book's ``plot_kernel_reg`` (D2L §10.2.2): the truth and the prediction on the test inputs,
    and the noisy training points."""
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x_test.numpy(), y_truth.numpy(), label="Truth")
    ax.plot(x_test.numpy(), y_hat.detach().numpy(), "m--", label="Pred")
    ax.plot(x_train.numpy(), y_train.numpy(), "o", alpha=0.5)
    ax.set(xlabel="x", ylabel="y", xlim=(0, 5), ylim=(-1, 5))
    ax.legend()
    return fig
