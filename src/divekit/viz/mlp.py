"""Figures of the MLP chapter (D2L §4.1-4.8): activation functions beside their derivatives,
loss curves side by side, and the decision regions of 2-D classifiers.

matplotlib's object API only (``Figure``), so nothing needs a display.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from matplotlib.figure import Figure

Curve = tuple[list[float], list[float]]  # (xs, ys)


def plot_functions_and_derivatives(x: torch.Tensor, functions: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Figure:
    """One column per function: f(x) on top, f'(x) below (D2L §4.1.2's plots).

    ``functions`` maps a name to (f(x), f'(x)), both shaped like ``x``.
    """
    fig = Figure(figsize=(3.2 * len(functions), 5), layout="constrained")
    axes = fig.subplots(2, len(functions), squeeze=False)
    xs = x.detach().cpu()
    for col, (name, (y, dy)) in enumerate(functions.items()):
        for row, (values, label) in enumerate(((y, f"{name}(x)"), (dy, f"grad of {name}"))):
            ax = axes[row, col]
            ax.plot(xs, values.detach().cpu())
            ax.set_xlabel("x")
            ax.set_title(label)
            ax.grid(True, alpha=0.3)
    return fig


def plot_curves(panels: dict[str, dict[str, Curve]], xlabel: str, ylabel: str, log_y: bool = True) -> Figure:
    """Side-by-side panels of named curves, e.g. train and test loss per setting (D2L §4.4-4.5)."""
    fig = Figure(figsize=(4 * len(panels), 3.3), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels.items()):
        for label, (xs, ys) in curves.items():
            ax.plot(xs, ys, label=label)
        if log_y:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    return fig


def plot_decision_regions(panels: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor]],
                          resolution: int = 200) -> Figure:
    """One panel per classifier on 2-D inputs: its predicted class over a grid, and the examples.

    ``panels`` maps a title to (predict, X, y): ``predict`` takes (M, 2) points and returns one
    label per point; X is (N, 2) and y (N,) the examples drawn on top.
    """
    fig = Figure(figsize=(3.6 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, (predict, X, y)) in zip(axes, panels.items()):
        X, y = X.detach().cpu().float(), y.detach().cpu()
        low, high = X.min(0).values - 0.5, X.max(0).values + 0.5
        g0, g1 = torch.meshgrid(torch.linspace(low[0], high[0], resolution), torch.linspace(low[1], high[1], resolution),
                                indexing="xy")  # (R, R) each
        grid = torch.stack([g0.reshape(-1), g1.reshape(-1)], dim=1)  # (R*R, 2)
        with torch.no_grad():
            regions = predict(grid).reshape(resolution, resolution).cpu().float()
        ax.contourf(g0, g1, regions, alpha=0.25, cmap="coolwarm")
        ax.scatter(X[:, 0], X[:, 1], c=y.float(), cmap="coolwarm", edgecolors="k", s=25)
        ax.set_title(title)
    return fig
