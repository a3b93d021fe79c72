"""Batch and layer normalization on PyTorch's kernels, twins of ``ops.scratch.norm`` (D2L §7.5,
§10.7.3). The layers are torch's own; the scratch ones share their arguments and state dicts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn import BatchNorm1d, BatchNorm2d, LayerNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "batch_norm", "layer_norm"]


def batch_norm(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
               running_var: torch.Tensor, training: bool, momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """Normalise X (B, D) per feature or (B, C, H, W) per channel (D2L §7.5.3)."""
    return F.batch_norm(X, running_mean, running_var, weight, bias, training, momentum, eps)


def layer_norm(X: torch.Tensor, normalized_shape: tuple[int, ...], weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """``F.layer_norm`` over the last ``len(normalized_shape)`` dimensions (D2L §10.7.3)."""
    return F.layer_norm(X, tuple(normalized_shape), weight, bias, eps)
