"""Linear models: linear regression (D2L §3.1-3.3) and softmax regression (D2L §3.4-3.7).

Both are one affine map ``o = X W^T + b`` on flattened inputs; softmax regression's logits ``o``
go to a cross-entropy loss, which applies the softmax itself (numerically stable, D2L §3.7.2).
Shapes: X (B, ...) flattened to (B, D); W (Q, D); b (Q,); o (B, Q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from divekit.models.registry import features_example, register_model
from divekit.options import Checked, at_least, option, positive
from divekit.ops import Ops


@dataclass
class LinearConfig(Checked):
    input_shape: tuple[int, ...] = option((2,), "shape of one example; flattened to D = prod(input_shape) features")
    num_outputs: int = option(1, "1 for regression, the number of classes for softmax regression", at_least(1))
    sigma: float | None = option(0.01, "weights start at N(0, sigma^2) (D2L §3.2.3); none keeps nn.Linear's "
                                       "U(-1/sqrt(D), 1/sqrt(D))", positive)
    bias: bool = option(True, "learn a bias b")
    zero_bias: bool = option(True, "the bias starts at 0 (D2L §3.2.3); false keeps nn.Linear's U(-1/sqrt(D), 1/sqrt(D)) "
                                   "(§3.7's concise softmax regression)")

    def __post_init__(self):
        super().__post_init__()
        if not self.input_shape or math.prod(self.input_shape) < 1:
            raise ValueError(f"a linear model needs at least one input feature, got input shape {self.input_shape}")


class LinearModel(nn.Module):
    """o = flatten(X) W^T + b."""

    def __init__(self, cfg: LinearConfig, ops: Ops):
        super().__init__()
        self.flatten = ops.Flatten()
        self.linear = ops.Linear(math.prod(cfg.input_shape), cfg.num_outputs, bias=cfg.bias)
        with torch.no_grad():
            if cfg.sigma is not None:
                self.linear.weight.normal_(0, cfg.sigma)
            if cfg.bias and cfg.zero_bias:
                self.linear.bias.zero_()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(X))  # (B, D) -> (B, Q)


@register_model("linear", config=LinearConfig, example=features_example, section="3.1-3.7")
def linear(cfg: LinearConfig, ops: Ops) -> LinearModel:
    """One affine layer on flattened inputs: linear regression, or softmax regression's logits."""
    return LinearModel(cfg, ops)
