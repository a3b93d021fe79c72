"""Multilayer perceptrons (D2L §4.2 scratch, §4.3 concise, §4.6 with dropout).

With L hidden layers of widths n_1..n_L and H_0 = X flattened:
    H_l = ReLU(H_{l-1} W_l^T + b_l)      (then dropout in training, if asked for)
    O   = H_L W_{L+1}^T + b_{L+1}        (logits; the loss applies the softmax)
Shapes: X (B, ...) flattened to (B, D); W_l (n_l, n_{l-1}); H_l (B, n_l); O (B, Q).
The book's §4.2 net is D-256-Q with one hidden layer; §4.6's is 784-256-256-10 with dropout 0.2
after the first hidden layer and 0.5 after the second.

Both twins are ``nn.Sequential`` with the same named layers (flatten, hidden1, relu1, dropout1,
hidden2, ..., output), so their state dicts have the same keys (hidden1.weight, ..., output.bias)
and load into each other. Weights start at N(0, sigma^2) with sigma = 0.01 and biases at 0, the
book's ``W = 0.01 * randn``, ``b = 0``.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from divekit.models.linear import Linear, LinearScratch
from divekit.ops.scratch.activations import relu
from divekit.ops.scratch.regularization import Dropout as DropoutScratch


class FlattenScratch(nn.Module):
    """(B, ...) -> (B, D)."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.shape[0], -1)


class ReLUScratch(nn.Module):
    """max(X, 0) elementwise, from :func:`divekit.ops.scratch.activations.relu`."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return relu(X)


def _mlp_layers(flatten: Callable, linear: Callable, activation: Callable, dropout: Callable, num_inputs: int,
                num_outputs: int, num_hiddens: int | Sequence[int], dropouts: float | Sequence[float]) -> OrderedDict:
    """The named layers of an MLP, made by the given layer factories."""
    hiddens = [num_hiddens] if isinstance(num_hiddens, int) else list(num_hiddens)
    if not hiddens or any(n < 1 for n in hiddens):
        raise ValueError(f"num_hiddens must be one or more positive layer widths, got {num_hiddens!r}")
    ps = [dropouts] * len(hiddens) if isinstance(dropouts, (int, float)) else list(dropouts)
    if ps and len(ps) != len(hiddens):
        raise ValueError(f"give one dropout probability per hidden layer ({len(hiddens)}), or one for all, got {dropouts!r}")
    widths = [num_inputs, *hiddens]
    layers = OrderedDict(flatten=flatten())
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths), 1):
        layers[f"hidden{i}"] = linear(n_in, n_out)  # H_i = H_{i-1} W_i^T + b_i, (B, n_i)
        layers[f"relu{i}"] = activation()
        if ps and ps[i - 1] > 0:
            layers[f"dropout{i}"] = dropout(ps[i - 1])
    layers["output"] = linear(widths[-1], num_outputs)  # O = H_L W^T + b, (B, Q)
    return layers


class MLPScratch(nn.Sequential):
    """The MLP from scratch pieces: ``LinearScratch`` (X W^T + b from tensor operations),
    ReLU as max(X, 0), and inverted dropout with its own random mask (D2L §4.2, §4.6.4)."""

    def __init__(self, num_inputs: int, num_outputs: int, num_hiddens: int | Sequence[int] = 256,
                 dropouts: float | Sequence[float] = (), sigma: float = 0.01):
        super().__init__(_mlp_layers(FlattenScratch, partial(LinearScratch, sigma=sigma), ReLUScratch, DropoutScratch,
                                     num_inputs, num_outputs, num_hiddens, dropouts))


class MLP(nn.Sequential):
    """The fast twin: ``nn.Sequential(Flatten, Linear, ReLU, [Dropout], ..., Linear)`` (D2L §4.3, §4.6.5)."""

    def __init__(self, num_inputs: int, num_outputs: int, num_hiddens: int | Sequence[int] = 256,
                 dropouts: float | Sequence[float] = (), sigma: float = 0.01):
        super().__init__(_mlp_layers(nn.Flatten, partial(Linear, sigma=sigma), nn.ReLU, nn.Dropout,
                                     num_inputs, num_outputs, num_hiddens, dropouts))


def mlp(input_shape: tuple[int, ...], num_outputs: int, impl: str, num_hiddens: int | Sequence[int] = 256,
        dropouts: float | Sequence[float] = (), sigma: float = 0.01) -> nn.Module:
    """An MLP for inputs of ``input_shape`` (flattened), from scratch or on PyTorch's layers."""
    num_inputs = math.prod(input_shape)
    if impl == "scratch":
        return MLPScratch(num_inputs, num_outputs, num_hiddens, dropouts, sigma)
    if impl == "fast":
        return MLP(num_inputs, num_outputs, num_hiddens, dropouts, sigma)
    raise ValueError(f"unknown impl {impl!r}; choose scratch or fast")
