"""Activation functions and their derivatives from tensor operations (D2L §4.1.2).

An activation is applied elementwise after an affine map; without one, a stack of linear layers
collapses to a single linear layer. Each ``*_grad`` is the closed-form derivative d f(x) / dx,
elementwise, the quantity the book plots beside each function. ``ReLU``, ``Sigmoid`` and ``Tanh``
are the same functions as layers, for ``Sequential`` models. ``GELU`` is BERT's activation (D2L §14.8).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GELU", "ReLU", "Sigmoid", "Tanh", "gelu", "relu", "relu_grad", "sigmoid", "sigmoid_grad", "tanh",
           "tanh_grad"]


def relu(X: torch.Tensor) -> torch.Tensor:
    """ReLU(x) = max(x, 0) (D2L §4.1.2.1).

    Written as "x where x > 0, else 0" rather than ``torch.maximum(X, 0)``, whose backward splits
    the gradient 1/2 : 1/2 at the tie x = 0; this way autograd's derivative at 0 is 0, as torch's.
    """
    return torch.where(X > 0, X, torch.zeros_like(X))


def relu_grad(X: torch.Tensor) -> torch.Tensor:
    """ReLU'(x) = 1 if x > 0 else 0; at x = 0 the book (and torch) take the left derivative, 0."""
    return (X > 0).to(X.dtype)


def sigmoid(X: torch.Tensor) -> torch.Tensor:
    """sigmoid(x) = 1 / (1 + exp(-x)), squashing any real into (0, 1) (D2L §4.1.2.2).

    Written naively, exp(-x) overflows to inf for x < -88 (float32) and the gradient becomes
    inf / inf = nan. So each branch only ever exponentiates a non-positive number:
    x >= 0: 1 / (1 + exp(-x));  x < 0: exp(x) / (1 + exp(x)) (the same value, multiplied by exp(x)/exp(x)).
    """
    nonneg = X >= 0
    # the other branch's input is replaced by 0, so neither branch overflows or sends nan back
    exp_neg = torch.exp(-torch.where(nonneg, X, torch.zeros_like(X)))  # exp(-x) for x >= 0, in (0, 1]
    exp_pos = torch.exp(torch.where(nonneg, torch.zeros_like(X), X))  # exp(x) for x < 0, in (0, 1)
    return torch.where(nonneg, 1 / (1 + exp_neg), exp_pos / (1 + exp_pos))


def sigmoid_grad(X: torch.Tensor) -> torch.Tensor:
    """sigmoid'(x) = sigmoid(x) (1 - sigmoid(x)): at most 1/4 (at x = 0), and vanishing as |x| grows."""
    s = sigmoid(X)
    return s * (1 - s)


def tanh(X: torch.Tensor) -> torch.Tensor:
    """tanh(x) = (1 - exp(-2x)) / (1 + exp(-2x)) = 2 sigmoid(2x) - 1, in (-1, 1) (D2L §4.1.2.3).

    The second form reuses the overflow-free sigmoid above.
    """
    return 2 * sigmoid(2 * X) - 1


def tanh_grad(X: torch.Tensor) -> torch.Tensor:
    """tanh'(x) = 1 - tanh(x)^2: 1 at x = 0, vanishing as |x| grows."""
    return 1 - tanh(X) ** 2


def gelu(X: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU(x) = x Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel, 2016): a ReLU that lets
    small negative inputs through a little, weighting x by how likely a standard normal is below it.
    Phi(x) = (1 + erf(x / sqrt 2)) / 2; ``approximate="tanh"``: Phi(x) ~ (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) / 2,
    the form the original BERT used."""
    if approximate == "none":
        return X * (1 + torch.erf(X / math.sqrt(2))) / 2
    if approximate == "tanh":
        return X * (1 + tanh(math.sqrt(2 / math.pi) * (X + 0.044715 * X ** 3))) / 2
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


class _Activation(nn.Module):
    """A layer without arguments or parameters that applies its function elementwise."""

    def __init__(self):
        super().__init__()


class ReLU(_Activation):
    """:func:`relu` as a layer. ``inplace=True`` (as ``nn.ReLU``'s) writes the result into X and
    returns it: no new tensor, for a ReLU whose input nothing else needs (after batch normalization,
    whose backward keeps its own input). Its gradient is 0 at x <= 0, as :func:`relu`'s."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.masked_fill_(X <= 0, 0) if self.inplace else relu(X)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(_Activation):
    """:func:`sigmoid` as a layer."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return sigmoid(X)


class Tanh(_Activation):
    """:func:`tanh` as a layer."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return tanh(X)


class GELU(nn.Module):
    """:func:`gelu` as a layer, with ``nn.GELU``'s argument."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        gelu(torch.zeros(1), approximate)  # a bad value fails here, not at the first forward
        self.approximate = approximate

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return gelu(X, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"
