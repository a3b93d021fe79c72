"""Key components (D2L chapter 1): the figure of regression losses with their likelihoods and
gradients, computed with the scratch or fast losses."""

from __future__ import annotations

from typing import Annotated

from divekit.experiments.registry import DemoResult, Impl, demo
from divekit.options import positive


@demo("loss-functions", section="1.2.3, 3.1.3", title="Regression losses: L2, L1 and Huber",
      dataset="none (curves at y = 0)")
def loss_functions(impl: Impl = "fast",
                   span: Annotated[float, "plot predictions y' in [-span, span] around the target y = 0", positive] = 3.0,
                   delta: Annotated[float, "Huber's delta: squared error within it, absolute error beyond", positive] = 1.0,
                   ) -> DemoResult:
    """The notes' figure of loss, likelihood exp(-l) and gradient dl/dy' for L2, L1 and Huber at y = 0.

    Results: each loss's gradient at the ends of the plot, which shows the point of the figure
    (L2's grows with the error; L1's stays at 1, and Huber's at delta where delta < span)."""
    from divekit.viz.losses import loss_curves, plot_loss_curves

    y_hat, curves = loss_curves(impl, span, delta)
    short = {title: title.split()[0].lower() for title in curves}  # "L2 loss" -> "l2", "Huber ..." -> "huber"
    results = {f"{short[title]}_gradient_at_{end}": float(curve["gradient"][index])
               for title, curve in curves.items() for end, index in (("min", 0), ("max", -1))}
    rows = [{"y_hat": float(y_hat[i]),
             **{f"{short[title]}_{name}": float(values[i]) for title, curve in curves.items()
                for name, values in curve.items()}}
            for i in range(len(y_hat))]
    return DemoResult(results=results, figures={"losses": plot_loss_curves(y_hat, curves)}, rows=rows)
