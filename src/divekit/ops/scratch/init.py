"""Xavier (Glorot) initialization from tensor operations (D2L §4.8.2.2).

For a layer o = W x with n_in inputs and n_out outputs and weights of zero mean and variance
sigma^2, Var[o] = n_in sigma^2 Var[x] and, going backward, Var[grad x] = n_out sigma^2 Var[grad o].
Keeping both variances unchanged would need n_in sigma^2 = 1 and n_out sigma^2 = 1; Xavier takes
the compromise (n_in + n_out) sigma^2 / 2 = 1, i.e. sigma = sqrt(2 / (n_in + n_out)). A uniform
U(-a, a) has variance a^2 / 3, hence a = sqrt(6 / (n_in + n_out)).

Weights are laid out as torch's: (n_out, n_in, *kernel), each kernel position counting as
another input and output (a conv layer sees n_in * kh * kw inputs per output).
"""

from __future__ import annotations

import math

import torch

__all__ = ["xavier_normal_", "xavier_uniform_"]


def fans(tensor: torch.Tensor) -> tuple[int, int]:
    """(n_in, n_out) of a weight of shape (n_out, n_in, *kernel)."""
    if tensor.dim() < 2:
        raise ValueError(f"Xavier initialization needs a weight with at least 2 dimensions (n_out, n_in, ...), "
                         f"got shape {tuple(tensor.shape)}; initialise biases separately (e.g. with zeros)")
    receptive_field = math.prod(tensor.shape[2:])  # 1 for a linear layer
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


@torch.no_grad()
def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill ``tensor`` in place from U(-a, a), a = gain * sqrt(6 / (n_in + n_out)); returns it."""
    n_in, n_out = fans(tensor)
    a = gain * math.sqrt(6 / (n_in + n_out))
    return tensor.uniform_(-a, a)  # the same draw as torch's, so both twins start alike at one seed


@torch.no_grad()
def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill ``tensor`` in place from N(0, sigma^2), sigma = gain * sqrt(2 / (n_in + n_out)); returns it."""
    n_in, n_out = fans(tensor)
    sigma = gain * math.sqrt(2 / (n_in + n_out))
    return tensor.normal_(0, sigma)
