"""Convolution, transposed convolution and pooling on PyTorch's kernels, twins of ``ops.scratch.conv``
(D2L §6.2-§6.5, §13.10).

The layers are PyTorch's own (same parameter names and shapes as the scratch ``Conv2d``, so state
dicts load across); the functions take the scratch functions' arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, Conv2d, ConvTranspose2d, MaxPool2d

from divekit.ops.scratch.conv import IntPair, conv_matrix, conv_output_size

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool2d", "Conv2d", "ConvTranspose2d", "MaxPool2d",
           "adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d", "conv2d", "conv_matrix", "conv_output_size",
           "conv_transpose2d", "corr2d", "max_pool2d", "trans_conv"]
SHARED = ("conv_matrix", "conv_output_size")  # the scratch objects themselves: nothing faster to call


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Cross-correlation of one image X (H, W) with a kernel K (kh, kw) (D2L §6.2.1)."""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"corr2d takes a 2-D image and a 2-D kernel, got shapes {tuple(X.shape)} and {tuple(K.shape)}")
    return F.conv2d(X[None, None], K[None, None])[0, 0]


def conv2d(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: IntPair = 1,
           padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
    """X (B, C, H, W), weight (O, C/g, kh, kw), bias (O,) -> (B, O, P, Q) (D2L §6.4)."""
    return F.conv2d(X, weight, bias, stride, padding, dilation, groups)


def trans_conv(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The basic transposed convolution of one image X (H, W) with a kernel K (kh, kw) (D2L §13.10.1)."""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"trans_conv takes a 2-D image and a 2-D kernel, "
                         f"got shapes {tuple(X.shape)} and {tuple(K.shape)}")
    return F.conv_transpose2d(X[None, None], K[None, None])[0, 0]


def conv_transpose2d(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: IntPair = 1,
                     padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1,
                     dilation: IntPair = 1) -> torch.Tensor:
    """X (B, C, H, W), weight (C, O/g, kh, kw), bias (O,) -> (B, O, P, Q) (D2L §13.10.2)."""
    return F.conv_transpose2d(X, weight, bias, stride, padding, output_padding, groups, dilation)


def max_pool2d(X: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               dilation: IntPair = 1, ceil_mode: bool = False) -> torch.Tensor:
    """Max pooling per channel (D2L §6.5)."""
    return F.max_pool2d(X, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool2d(X: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> torch.Tensor:
    """Average pooling per channel (D2L §6.5)."""
    return F.avg_pool2d(X, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def adaptive_avg_pool2d(X: torch.Tensor, output_size: IntPair) -> torch.Tensor:
    """Average pooling to a fixed output size (D2L §7.3.2)."""
    return F.adaptive_avg_pool2d(X, output_size)


def adaptive_max_pool2d(X: torch.Tensor, output_size: IntPair) -> torch.Tensor:
    """Max pooling to a fixed output size (D2L §13.7.1)."""
    return F.adaptive_max_pool2d(X, output_size)
