"""Regularization on PyTorch's kernels: twins of :mod:`divekit.ops.scratch.regularization`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import Dropout

from divekit.ops.scratch.regularization import weights_and_biases

__all__ = ["Dropout", "WeightDecay", "dropout", "l2_penalty"]


def l2_penalty(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(-1)
    return torch.dot(flat, flat) / 2


def dropout(X: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    return F.dropout(X, p, training)


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
