"""Regularization on PyTorch's kernels: twins of :mod:`divekit.ops.scratch.regularization`.

Dropout on a CPU draws its mask with ``torch.rand_like`` instead of ``F.dropout``'s ``bernoulli_``,
whose per-element generator is the slower of the two: a forward and backward of the book's
Transformer activations (64, 10, 32) took 148 us against 221 us on one core of this project's CPU
(about 3% of a `transformer` training step). The law is the same: each entry kept with
probability 1 - p and scaled by 1 / (1 - p). Elsewhere, and for low-precision tensors (whose
uniform draws are coarse), ``F.dropout`` runs: on a GPU it is one fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from divekit.ops.scratch.regularization import check_dropout_probability, weights_and_biases

__all__ = ["Dropout", "WeightDecay", "dropout", "l2_penalty"]


def l2_penalty(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(-1)
    return torch.dot(flat, flat) / 2


def dropout(X: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout (D2L §4.6.4): 0 with probability p, else X / (1 - p); X itself when not training."""
    check_dropout_probability(p)
    if not training or p == 0 or p == 1 or X.device.type != "cpu" or X.dtype not in (torch.float32, torch.float64):
        return F.dropout(X, p, training)
    return X * dropout_mask(X, p)


def dropout_mask(X: torch.Tensor, p: float) -> torch.Tensor:
    """The factors :func:`dropout` multiplies X (float32/64 on a CPU) by, drawn as it draws them: 1 / (1 - p)
    with probability 1 - p, else 0, for 0 < p < 1."""
    return torch.rand_like(X).ge_(p).mul_(1 / (1 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same parameters, state and ``repr``) computed by :func:`dropout`."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return F.dropout(X, self.p, self.training, inplace=True) if self.inplace else dropout(X, self.p, self.training)


class WeightDecay:
    """L2 weight decay on the weights only, the concise way (D2L §4.5.4): no penalty in the loss;
    the optimizer's ``weight_decay`` on the weights' parameter group adds lambd * w to their gradients."""

    def __init__(self, lambd: float):
        if not lambd >= 0:
            raise ValueError(f"weight decay lambda must be non-negative, got {lambd}")
        self.lambd = lambd

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return torch.zeros((), device=next(model.parameters()).device)

    def param_groups(self, model: nn.Module) -> list[dict]:
        weights, biases = weights_and_biases(model)
        return [{"params": weights, "weight_decay": self.lambd}, {"params": biases, "weight_decay": 0.0}]
