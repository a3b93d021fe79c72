"""Regularization on PyTorch's kernels: twins of :mod:`divekit.ops.scratch.regularization`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn import Dropout

__all__ = ["Dropout", "dropout", "l2_penalty"]


def l2_penalty(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(-1)
    return torch.dot(flat, flat) / 2


def dropout(X: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    return F.dropout(X, p, training)
