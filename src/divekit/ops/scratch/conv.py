"""Convolution and pooling from tensor operations (D2L §6.2-§6.5).

Letters: B batch size, C input channels, O output channels, H x W input height and width,
kh x kw kernel (window) size, P x Q output height and width.

Every operation looks at the same thing: the (kh, kw) windows of a padded input, taken with a
stride. ``Tensor.unfold`` gives all windows at once as a strided view (no Python loop over pixels),
so cross-correlation is one ``einsum`` over each window and pooling one ``amax`` or ``sum``.
Output size per axis: floor((n - k + 2p) / s) + 1 (D2L §6.3).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AvgPool2d", "Conv2d", "MaxPool2d", "avg_pool2d", "conv2d", "conv_output_size", "corr2d", "max_pool2d"]

IntPair = int | tuple[int, int]


def _pair(value: IntPair, name: str, minimum: int = 1) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= minimum for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, each at least {minimum}, got {value!r}")
    return pair


def conv_output_size(n: int, kernel_size: int, padding: int = 0, stride: int = 1) -> int:
    """floor((n - k + 2p) / s) + 1: the output length of a window of k sliding over n entries
    padded by p on each side, s at a time (D2L §6.3.2)."""
    if kernel_size > n + 2 * padding:
        raise ValueError(f"kernel size {kernel_size} is larger than the padded input ({n} + 2 * {padding})")
    return (n - kernel_size + 2 * padding) // stride + 1


def _pad(X: torch.Tensor, padding: tuple[int, int], value: float) -> torch.Tensor:
    """X (B, C, H, W) -> (B, C, H + 2 ph, W + 2 pw), the border filled with ``value``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return X
    B, C, H, W = X.shape
    out = X.new_full((B, C, H + 2 * ph, W + 2 * pw), value)
    out[:, :, ph:ph + H, pw:pw + W] = X  # autograd passes the gradient of the inside back to X
    return out


def _windows(X: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
             pad_value: float = 0.0) -> torch.Tensor:
    """All (kh, kw) windows of X (B, C, H, W), padded and strided: a view of shape (B, C, P, Q, kh, kw)."""
    if X.dim() != 4:
        raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(X.shape)}")
    for k, p, n in zip(kernel, padding, X.shape[-2:]):
        conv_output_size(n, k, p)  # raises if the window does not fit
    X = _pad(X, padding, pad_value)
    (kh, kw), (sh, sw) = kernel, stride
    return X.unfold(2, kh, sh).unfold(3, kw, sw)  # (B, C, P, Q, kh, kw)


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Two-dimensional cross-correlation of one image X (H, W) with a kernel K (kh, kw) (D2L §6.2.1):
    Y[i, j] = sum_{a, b} X[i + a, j + b] K[a, b], Y of shape (H - kh + 1, W - kw + 1)."""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"corr2d takes a 2-D image and a 2-D kernel, got shapes {tuple(X.shape)} and {tuple(K.shape)}")
    return conv2d(X[None, None], K[None, None])[0, 0]


def conv2d(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: IntPair = 1, padding: IntPair = 0) -> torch.Tensor:
    """Multi-channel cross-correlation, what ``nn.Conv2d`` computes (D2L §6.2-§6.4).

    X (B, C, H, W), weight (O, C, kh, kw), bias (O,) -> (B, O, P, Q) with
    Y[b, o, p, q] = sum_{c, i, j} X_pad[b, c, p s_h + i, q s_w + j] W[o, c, i, j] + bias[o].
    Input channels are summed over (§6.4.1); each output channel has its own kernel (§6.4.2);
    a 1x1 kernel is a fully connected layer applied at every pixel (§6.4.3).
    """
    if weight.dim() != 4 or (X.dim() == 4 and X.shape[1] != weight.shape[1]):
        raise ValueError(f"weight (O, C, kh, kw) = {tuple(weight.shape)} does not fit input (B, C, H, W) = {tuple(X.shape)}")
    windows = _windows(X, weight.shape[-2:], _pair(stride, "stride"), _pair(padding, "padding", minimum=0))
    Y = torch.einsum("ocij,bcpqij->bopq", weight, windows)  # (B, O, P, Q)
    return Y if bias is None else Y + bias[:, None, None]


def max_pool2d(X: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> torch.Tensor:
    """The largest entry of each window, per channel (D2L §6.5). Padding counts as -inf, so it is
    never the maximum. Where a window holds several equal maxima (zeros after a ReLU), the gradient
    is split evenly among them; PyTorch's kernel gives it all to one."""
    kernel, stride, padding = _pool_args(kernel_size, stride, padding)
    return _windows(X, kernel, stride, padding, pad_value=-math.inf).amax(dim=(-2, -1))  # (B, C, P, Q)


def avg_pool2d(X: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               count_include_pad: bool = True) -> torch.Tensor:
    """The mean of each window, per channel (D2L §6.5). Padding is zeros; with
    ``count_include_pad`` (PyTorch's default) they count in the divisor kh * kw, else only the
    window's real entries do."""
    kernel, stride, padding = _pool_args(kernel_size, stride, padding)
    sums = _windows(X, kernel, stride, padding).sum(dim=(-2, -1))  # (B, C, P, Q)
    if count_include_pad:
        return sums / (kernel[0] * kernel[1])
    ones = X.new_ones((1, 1, *X.shape[-2:]))
    counts = _windows(ones, kernel, stride, padding).sum(dim=(-2, -1))  # (1, 1, P, Q) real entries per window
    return sums / counts


def _pool_args(kernel_size: IntPair, stride: IntPair | None, padding: IntPair):
    """(kernel, stride, padding) as pairs; the stride defaults to the window size, as in PyTorch."""
    kernel, padding = _pair(kernel_size, "kernel_size"), _pair(padding, "padding", minimum=0)
    if any(2 * p > k for k, p in zip(kernel, padding)):
        raise ValueError(f"pooling padding {padding} must be at most half the window {kernel}, "
                         "else some windows would hold only padding")
    return kernel, kernel if stride is None else _pair(stride, "stride"), padding


class Conv2d(nn.Module):
    """A convolution layer from :func:`conv2d` (D2L §6.2.3) with ``nn.Conv2d``'s parameter names,
    shapes and initialisation: weight (O, C, kh, kw) and bias (O,) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
        self.padding = _pair(padding, "padding", minimum=0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        bound = 1 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)  # = nn.Conv2d's kaiming_uniform_(a=sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return conv2d(X, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class _Pool2d(nn.Module):
    """What both pooling layers hold: window size, stride (default: the window size) and padding."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling layer from :func:`max_pool2d` (D2L §6.5)."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return max_pool2d(X, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Average pooling layer from :func:`avg_pool2d` (D2L §6.5)."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
                 count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(X, self.kernel_size, self.stride, self.padding, self.count_include_pad)
