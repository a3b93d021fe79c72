"""Batch normalization (D2L §7.5) and layer normalization (D2L §10.7.3) from tensor operations.

Letters: B batch size, D features (dense layers), C channels, H x W image size.

In training, each feature (dense input (B, D)) or channel (conv input (B, C, H, W)) is
standardised with the minibatch's own mean and (biased) variance, then scaled and shifted by
learnable gamma and beta:  y = gamma * (x - mu_B) / sqrt(sigma_B^2 + eps) + beta.
Running estimates of mean and variance are kept for inference, with PyTorch's convention
running = (1 - m) * running + m * batch (m = 0.1; the book writes the same update with
momentum 0.9 on the other term) and the unbiased batch variance in the running estimate.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "batch_norm", "layer_norm"]


def batch_norm(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
               running_var: torch.Tensor, training: bool, momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """Normalise X (B, D) per feature, or (B, C, L) or (B, C, H, W) per channel (D2L §7.5.3).

    In training the batch statistics are used and ``running_mean``/``running_var`` (D,) or (C,)
    are updated in place; in evaluation the running statistics are used.
    """
    if X.dim() not in (2, 3, 4):
        raise ValueError(f"batch_norm takes (B, D), (B, C, L) or (B, C, H, W) inputs, got shape {tuple(X.shape)}")
    dims = (0, *range(2, X.dim()))  # reduce over everything but the feature/channel axis
    shape = (1, -1) + (1,) * (X.dim() - 2)  # broadcast per-feature (D,) or per-channel (C,) stats
    if training:
        n = X.numel() // X.shape[1]  # values per feature: B, B * L or B * H * W
        if n < 2:
            raise ValueError(f"batch normalization in training needs more than one value per channel, got input {tuple(X.shape)}")
        mean = X.mean(dim=dims)  # (D,) or (C,)
        var = ((X - mean.reshape(shape)) ** 2).mean(dim=dims)  # biased: divides by n
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))  # unbiased, as PyTorch
    else:
        mean, var = running_mean, running_var
    X_hat = (X - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return weight.reshape(shape) * X_hat + bias.reshape(shape)


class _BatchNorm(nn.Module):
    """What both batch normalization layers hold (D2L §7.5.3): ``nn.BatchNorm*d``'s state dict
    names, weight (gamma), bias (beta), running_mean, running_var, num_batches_tracked. A
    ``momentum`` of None averages every batch alike (a cumulative mean, weight 1 / batches), as torch's."""

    num_dims: tuple[int, ...] = ()  # the input's numbers of dimensions

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() not in self.num_dims or X.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) takes inputs of "
                             f"{' or '.join(map(str, self.num_dims))} dimensions with {self.num_features} features on "
                             f"axis 1, got shape {tuple(X.shape)}")
        if self.training:
            self.num_batches_tracked += 1
        momentum = 1 / int(self.num_batches_tracked) if self.momentum is None and self.training else self.momentum
        return batch_norm(X, self.weight, self.bias, self.running_mean, self.running_var, self.training,
                          momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalization per feature of a dense layer's output (B, D) (D2L §7.5.2.1), or per channel of a
    sequence (B, C, L), as ``nn.BatchNorm1d``."""

    num_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization per channel of a convolution's output (B, C, H, W) (D2L §7.5.2.2)."""

    num_dims = (4,)


def layer_norm(X: torch.Tensor, normalized_shape: tuple[int, ...], weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each example over its last ``len(normalized_shape)`` dimensions, then scale and
    shift (D2L §10.7.3): unlike batch norm, the statistics are the example's own, so training and
    prediction compute the same thing and the batch size does not matter."""
    normalized_shape = tuple(normalized_shape)
    if tuple(X.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm over the last dimensions {normalized_shape} got input of shape {tuple(X.shape)}")
    dims = tuple(range(-len(normalized_shape), 0))
    mean = X.mean(dim=dims, keepdim=True)
    var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)  # biased, as in training
    X_hat = (X - mean) / torch.sqrt(var + eps)
    if weight is not None:
        X_hat = X_hat * weight
    return X_hat if bias is None else X_hat + bias


class LayerNorm(nn.Module):
    """Layer normalization (D2L §10.7.3) with ``nn.LayerNorm``'s state dict: weight (ones), bias (zeros)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return layer_norm(X, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"
