"""Key components (D2L chapter 1): the figure of regression losses with their likelihoods and
gradients, computed with the scratch or fast losses."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from divekit.experiments.config import RunConfig, option
from divekit.experiments.registry import DemoResult, Experiment, register
from divekit.viz.losses import loss_curves, plot_loss_curves


@dataclass
class LossFunctionsConfig(RunConfig):
    span: float = option(3.0, "plot predictions y' in [-span, span] around the target y = 0")
    delta: float = option(1.0, "Huber's delta: squared error within it, absolute error beyond")

    def __post_init__(self):
        super().__post_init__()
        if not self.span > 0 or not self.delta > 0:
            raise ValueError(f"--span and --delta must be positive, got {self.span} and {self.delta}")


def loss_functions(cfg: LossFunctionsConfig, device: torch.device) -> DemoResult:
    """D2L §1.2.3: L2, L1 and Huber loss at y = 0, with likelihood exp(-l) and gradient dl/dy'.

    Results: each loss's gradient at the ends of the plot, which shows the point of the figure
    (L2's grows with the error; L1's and Huber's stay at 1 and delta)."""
    y_hat, curves = loss_curves(cfg.impl, cfg.span, cfg.delta)
    short = {title: title.split()[0].lower() for title in curves}  # "L2 loss" -> "l2", "Huber ..." -> "huber"
    results = {f"{short[title]}_gradient_at_{end}": float(curve["gradient"][index])
               for title, curve in curves.items() for end, index in (("min", 0), ("max", -1))}
    rows = [{"y_hat": float(y_hat[i]),
             **{f"{short[title]}_{name}": float(values[i]) for title, curve in curves.items()
                for name, values in curve.items()}}
            for i in range(len(y_hat))]
    return DemoResult(results=results, figures={"losses": plot_loss_curves(y_hat, curves)}, rows=rows)


register(Experiment(
    name="loss-functions",
    section="1.2.3, 3.1.3",
    title="Regression losses: L2, L1 and Huber",
    dataset="none (curves at y = 0)",
    reproduces="the notes' figure of loss, likelihood exp(-l) and gradient for L2, L1 and Huber",
    config=LossFunctionsConfig,
    demo=loss_functions,
))
