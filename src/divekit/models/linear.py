"""Linear models: linear regression (D2L §3.1-3.3) and softmax regression (D2L §3.4-3.7).

Both are one affine map ``o = X W^T + b`` on flattened inputs; softmax regression's logits ``o``
go to a cross-entropy loss, which applies the softmax itself (numerically stable, D2L §3.7.2).
Shapes: X (B, ...) flattened to (B, D); W (Q, D); b (Q,); o (B, Q).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LinearScratch(nn.Module):
    """o = X W^T + b from tensor operations, W ~ N(0, sigma^2), b = 0 (D2L §3.2.2)."""

    def __init__(self, num_inputs: int, num_outputs: int, sigma: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_outputs, num_inputs) * sigma)
        self.bias = nn.Parameter(torch.zeros(num_outputs))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = X.reshape(X.shape[0], -1)  # (B, D)
        return X @ self.weight.T + self.bias  # (B, Q)


class Linear(nn.Linear):
    """The fast twin: ``nn.Linear`` on flattened inputs with the book's N(0, sigma^2) init (D2L §3.3)."""

    def __init__(self, num_inputs: int, num_outputs: int, sigma: float = 0.01):
        super().__init__(num_inputs, num_outputs)
        nn.init.normal_(self.weight, std=sigma)
        nn.init.zeros_(self.bias)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return super().forward(X.flatten(1))


def linear_model(input_shape: tuple[int, ...], num_outputs: int, impl: str, sigma: float = 0.01) -> nn.Module:
    """Linear regression (``num_outputs`` = 1) or softmax regression (one output per class)."""
    num_inputs = math.prod(input_shape)
    if impl == "scratch":
        return LinearScratch(num_inputs, num_outputs, sigma)
    if impl == "fast":
        return Linear(num_inputs, num_outputs, sigma)
    raise ValueError(f"unknown impl {impl!r}; choose scratch or fast")


def init_like_nn_linear(layer: nn.Module) -> nn.Module:
    """Re-draw a linear layer's weight (Q, D) and bias (Q,) from U(-1/sqrt(D), 1/sqrt(D)), the
    distribution ``nn.Linear`` starts from, for a model whose book version uses ``nn.Linear``'s
    default rather than the N(0, 0.01) of §3. Returns the layer."""
    bound = 1 / math.sqrt(layer.weight.shape[1])
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        layer.bias.uniform_(-bound, bound)
    return layer
