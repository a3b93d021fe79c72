"""The notes' figure of regression losses (D2L §1.2.3, §3.1.3): for the target y = 0 and a
prediction y' on a grid, each loss l(y, y') with its likelihood exp(-l) and its gradient dl/dy'.

L2 (Gaussian likelihood) has a gradient that grows with the error, so outliers dominate; L1
(Laplace likelihood) has a gradient of constant size, undefined at 0; Huber's robust loss is L2
within delta and L1 beyond, so its gradient is the L2 gradient clipped to ±delta.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from divekit.ops import get_ops


def loss_curves(impl: str = "scratch", span: float = 3.0, delta: float = 1.0,
                num_points: int = 601) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """The grid y' in [-span, span] (num_points,) and, per loss title, its "loss", "likelihood"
    (exp(-l)) and "gradient" (dl/dy', by autograd) at y = 0, all float64 (num_points,)."""
    if not span > 0 or num_points < 2:
        raise ValueError(f"need span > 0 and num_points >= 2, got span={span}, num_points={num_points}")
    ops = get_ops(impl)
    y_hat = torch.linspace(-span, span, num_points, dtype=torch.float64)
    y = torch.zeros_like(y_hat)
    losses = {
        "L2 loss": ops.squared_loss,
        "L1 loss": ops.l1_loss,
        f"Huber loss (delta = {delta:g})": lambda a, b: ops.huber_loss(a, b, delta),
    }
    curves = {}
    for title, loss_fn in losses.items():
        point = y_hat.clone().requires_grad_()
        loss = loss_fn(point, y)
        (gradient,) = torch.autograd.grad(loss.sum(), point)  # elementwise loss: d(sum)/dy'_i = dl_i/dy'_i
        loss = loss.detach()
        curves[title] = {"loss": loss, "likelihood": torch.exp(-loss), "gradient": gradient}
    return y_hat, curves


def plot_loss_curves(y_hat: torch.Tensor, curves: dict[str, dict[str, torch.Tensor]]) -> Figure:
    """One panel per loss, each with its loss, likelihood and gradient curves against y'."""
    fig = Figure(figsize=(4 * len(curves), 3.2), layout="constrained")
    for i, (title, curve) in enumerate(curves.items(), 1):
        ax = fig.add_subplot(1, len(curves), i)
        for name, color in (("loss", "tab:blue"), ("likelihood", "tab:green"), ("gradient", "tab:orange")):
            ax.plot(y_hat.numpy(), curve[name].numpy(), color=color, label=name)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_title(title)
        ax.set_xlabel("y' (prediction), y = 0")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    return fig
