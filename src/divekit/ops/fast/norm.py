"""Batch normalization on PyTorch's kernels, twin of ``ops.scratch.norm`` (D2L §7.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BatchNorm", "batch_norm"]


def batch_norm(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
               running_var: torch.Tensor, training: bool, momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """Normalise X (B, D) per feature or (B, C, H, W) per channel (D2L §7.5.3)."""
    return F.batch_norm(X, running_mean, running_var, weight, bias, training, momentum, eps)


class BatchNorm(_BatchNorm):
    """``nn.BatchNorm1d`` (``num_dims`` = 2) or ``nn.BatchNorm2d`` (``num_dims`` = 4) behind the
    scratch layer's constructor, with the same state dict (D2L §7.5.5)."""

    def __init__(self, num_features: int, num_dims: int, eps: float = 1e-5, momentum: float = 0.1):
        if num_dims not in (2, 4):
            raise ValueError(f"num_dims must be 2 (dense layers) or 4 (conv layers), got {num_dims}")
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.num_dims = num_dims

    def _check_input_dim(self, X: torch.Tensor) -> None:
        if X.dim() != self.num_dims:
            raise ValueError(f"BatchNorm({self.num_features}, num_dims={self.num_dims}) got input of shape {tuple(X.shape)}")
