"""Convolution, transposed convolution and pooling from tensor operations (D2L §6.2-§6.5, §13.10).

Letters: B batch size, C input channels, O output channels, g groups, H x W input height and
width, kh x kw kernel (window) size, s stride, d dilation, P x Q output height and width.

Every operation looks at the same thing: the (kh, kw) windows of a padded input, taken with a
stride. ``Tensor.unfold`` gives all windows at once as a strided view (no Python loop over pixels),
so cross-correlation is one ``einsum`` over each window and pooling one ``amax`` or ``sum``;
``F.fold``, unfold's adjoint, adds blocks back onto their windows for the transposed convolution.
Output size per axis: floor((n - k + 2p) / s) + 1 (D2L §6.3), with taps d apart floor((n + 2p - d (k - 1) - 1) / s) + 1.
Pooling's ``ceil_mode`` rounds up instead, so a last window may hang over the bottom or right edge (it pools
what it covers), as long as it starts before the right padding.

A transposed convolution (§13.10) runs the other way: each input entry spreads a copy of the kernel,
scaled by itself, over the output, copies s apart, and overlapping copies add up. It is the transpose
of a convolution's matrix (:func:`conv_matrix`): it maps a convolution's output shape back to its
input shape (with output_padding = (n + 2p - k) mod s where s does not divide n + 2p - k), which is
how FCN upsamples (§13.11). Output size per axis:
(n - 1) s - 2p + d (k - 1) + 1 + output_padding.
"""

from __future__ import annotations

import functools
import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool2d", "Conv2d", "ConvTranspose2d", "MaxPool2d",
           "adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d", "conv2d", "conv_matrix", "conv_output_size",
           "conv_transpose2d", "corr2d", "max_pool2d", "trans_conv"]

IntPair = int | tuple[int, int]


def _pair(value: IntPair, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (numpy's too, as torch takes them) -> a pair of Python ints."""
    try:
        pair = (operator.index(value),) * 2 if not hasattr(value, "__len__") else tuple(map(operator.index, value))
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(v >= minimum for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, each at least {minimum}, got {value!r}")
    return pair


def _images_or_one(f):
    """Let ``f`` (X (B, C, H, W), ...) take one image (C, H, W) too, as torch's layers do: it runs on a batch
    of one; other shapes are a ValueError naming both forms."""
    @functools.wraps(f)
    def images_or_one(X: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if X.dim() == 3:
            return f(X[None], *args, **kwargs)[0]
        if X.dim() != 4:
            raise ValueError(f"{f.__name__} takes a batch of images (B, C, H, W) or one image (C, H, W), got shape "
                             f"{tuple(X.shape)}")
        return f(X, *args, **kwargs)

    return images_or_one


def _add_bias(Y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Y (B, O, P, Q) plus one bias per output channel, bias (O,) or None, in Y's dtype (bf16 under autocast,
    as F.conv2d)."""
    if bias is None:
        return Y
    if bias.shape != (Y.shape[1],):
        raise ValueError(f"bias must hold one value per output channel, shape ({Y.shape[1]},); got {tuple(bias.shape)}")
    return Y + bias[:, None, None].to(Y.dtype)


def conv_output_size(n: int, kernel_size: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> int:
    """floor((n + 2p - d (k - 1) - 1) / s) + 1: the output length of a window of k taps, d apart,
    sliding over n entries padded by p on each side, s at a time (D2L §6.3.2; d = 1 gives the
    book's floor((n - k + 2p) / s) + 1)."""
    span = dilation * (kernel_size - 1) + 1
    if span > n + 2 * padding:
        raise ValueError(f"kernel size {kernel_size} (dilation {dilation}) is larger than the padded input "
                         f"({n} + 2 * {padding})")
    return (n + 2 * padding - span) // stride + 1


def _pad(X: torch.Tensor, padding: tuple[int, int], value: float, extra: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """X (B, C, H, W) -> (B, C, H + 2 ph + eh, W + 2 pw + ew), the border filled with ``value``: ``padding``
    on each side, and ``extra`` more rows at the bottom and columns at the right."""
    (ph, pw), (eh, ew) = padding, extra
    if ph == pw == eh == ew == 0:
        return X
    B, C, H, W = X.shape
    out = X.new_full((B, C, H + 2 * ph + eh, W + 2 * pw + ew), value)
    out[:, :, ph:ph + H, pw:pw + W] = X  # autograd passes the gradient of the inside back to X
    return out


def _windows(X: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
             pad_value: float = 0.0, dilation: tuple[int, int] = (1, 1),
             extra: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """All (kh, kw) windows of X (B, C, H, W), padded (``extra`` more rows and columns at the bottom and
    right: pooling's ``ceil_mode``), strided and dilated: a view of shape (B, C, P, Q, kh, kw)."""
    for k, p, d, n, e in zip(kernel, padding, dilation, X.shape[-2:], extra):
        conv_output_size(n + e, k, p, dilation=d)  # raises if the window does not fit
    X = _pad(X, padding, pad_value, extra)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    spans = X.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)  # (B, C, P, Q, span_h, span_w)
    return spans[..., ::dh, ::dw]  # every d-th tap: (B, C, P, Q, kh, kw)


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Two-dimensional cross-correlation of one image X (H, W) with a kernel K (kh, kw) (D2L §6.2.1):
    Y[i, j] = sum_{a, b} X[i + a, j + b] K[a, b], Y of shape (H - kh + 1, W - kw + 1)."""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"corr2d takes a 2-D image and a 2-D kernel, got shapes {tuple(X.shape)} and {tuple(K.shape)}")
    return conv2d(X[None, None], K[None, None])[0, 0]


@_images_or_one
def conv2d(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: IntPair = 1,
           padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
    """Multi-channel cross-correlation, what ``nn.Conv2d`` computes (D2L §6.2-§6.4).

    X (B, C, H, W), weight (O, C/g, kh, kw), bias (O,) -> (B, O, P, Q) with
    Y[b, o, p, q] = sum_{c, i, j} X_pad[b, c, p s_h + i d_h, q s_w + j d_w] W[o, c, i, j] + bias[o].
    Input channels are summed over (§6.4.1); each output channel has its own kernel (§6.4.2);
    a 1x1 kernel is a fully connected layer applied at every pixel (§6.4.3). With ``groups`` g,
    the channels are cut into g groups and output group k only sees input group k.
    """
    if weight.dim() != 4 or X.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"weight (O, C/groups, kh, kw) = {tuple(weight.shape)} with groups={groups} does not fit "
                         f"input (B, C, H, W) = {tuple(X.shape)}")
    if weight.shape[0] % groups:
        raise ValueError(f"{weight.shape[0]} output channels cannot be cut into groups={groups}")
    windows = _windows(X, weight.shape[-2:], _pair(stride, "stride"), _pair(padding, "padding", minimum=0),
                       dilation=_pair(dilation, "dilation"))
    B, C, P, Q, kh, kw = windows.shape
    windows = windows.reshape(B, groups, C // groups, P, Q, kh, kw)
    W = weight.reshape(groups, -1, C // groups, kh, kw)  # (g, O/g, C/g, kh, kw)
    Y = torch.einsum("gocij,bgcpqij->bgopq", W, windows).reshape(B, weight.shape[0], P, Q)  # (B, O, P, Q)
    return _add_bias(Y, bias)


def trans_conv(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The basic transposed convolution of one image X (H, W) with a kernel K (kh, kw) (D2L §13.10.1):
    Y[i:i + kh, j:j + kw] += X[i, j] K for every (i, j), Y of shape (H + kh - 1, W + kw - 1)."""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"trans_conv takes a 2-D image and a 2-D kernel, "
                         f"got shapes {tuple(X.shape)} and {tuple(K.shape)}")
    return conv_transpose2d(X[None, None], K[None, None])[0, 0]


@_images_or_one
def conv_transpose2d(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: IntPair = 1,
                     padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1,
                     dilation: IntPair = 1) -> torch.Tensor:
    """Transposed convolution, what ``nn.ConvTranspose2d`` computes (D2L §13.10.2).

    X (B, C, H, W), weight (C, O/g, kh, kw) (note: input channels first), bias (O,) -> (B, O, P, Q):
        Y_full[b, o, i s_h + a d_h, j s_w + c d_w] += sum_c X[b, c, i, j] W[c, o, a, c']
    and Y is Y_full with ``padding`` rows and columns removed from each side (padding shrinks the
    output, where a convolution's padding grows its input); ``output_padding`` adds rows and
    columns at the bottom and right, to reach one of the input sizes that a strided convolution
    maps to the same output size. P = (H - 1) s_h - 2 p_h + d_h (kh - 1) + output_padding_h + 1.
    With g groups, input group k only feeds output group k.
    """
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding", minimum=0)
    output_padding, dilation = _pair(output_padding, "output_padding", minimum=0), _pair(dilation, "dilation")
    if weight.dim() != 4 or X.shape[1] != weight.shape[0] or X.shape[1] % groups:
        raise ValueError(f"weight (C, O/groups, kh, kw) = {tuple(weight.shape)} with groups={groups} does not fit "
                         f"input (B, C, H, W) = {tuple(X.shape)}")
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"output_padding {output_padding} must be smaller than the stride {stride} or the dilation "
                         f"{dilation}")
    B, C, H, W = X.shape
    kh, kw = weight.shape[-2:]
    P, Q = ((n - 1) * s - 2 * p + d * (k - 1) + op + 1
            for n, s, p, d, k, op in zip((H, W), stride, padding, dilation, (kh, kw), output_padding))
    if P < 1 or Q < 1:
        raise ValueError(f"padding {padding} removes the whole {P}x{Q} output of a transposed convolution of a "
                         f"{H}x{W} input")
    Xg = X.reshape(B, groups, C // groups, H, W)
    Wg = weight.reshape(groups, C // groups, -1, kh, kw)  # (g, C/g, O/g, kh, kw)
    # every input entry times the whole kernel: one (O, kh, kw) block of the output per input position
    O = weight.shape[1] * groups
    blocks = torch.einsum("bgchw,gcokl->bgoklhw", Xg, Wg).reshape(B, O * kh * kw, H * W)  # (B, O kh kw, H W)
    # fold, the adjoint of unfold, adds each block onto the window it stands for: the windows of a
    # convolution of the output, s apart, taps d apart
    full = (H - 1) * stride[0] + dilation[0] * (kh - 1) + 1, (W - 1) * stride[1] + dilation[1] * (kw - 1) + 1
    Y = F.fold(blocks, full, (kh, kw), dilation=dilation, stride=stride)  # (B, O, full_h, full_w)
    Y = F.pad(Y, (0, output_padding[1], 0, output_padding[0]))  # output_padding: rows and columns at the end
    Y = Y[..., padding[0]:padding[0] + P, padding[1]:padding[1] + Q]  # padding cuts the border off: (B, O, P, Q)
    return _add_bias(Y, bias)


def conv_matrix(K: torch.Tensor, input_shape: tuple[int, int], stride: IntPair = 1,
                padding: IntPair = 0) -> torch.Tensor:
    """The matrix M (P Q, H W) of the convolution of an H x W image with the kernel K (kh, kw)
    (the book's ``kernel2matrix``, D2L §13.10.3): conv(X) = M vec(X), reshaped to (P, Q), and the
    transposed convolution with the same kernel, stride and padding, and output_padding
    (H + 2p - kh) mod s (likewise for W), is M^T: vec(Y) -> (H, W).
    Column j of M is the convolution of the j-th one-hot image."""
    H, W = input_shape
    basis = torch.eye(H * W, dtype=K.dtype, device=K.device).reshape(H * W, 1, H, W)  # (H W, 1, H, W)
    responses = conv2d(basis, K[None, None], stride=stride, padding=padding)  # (H W, 1, P, Q)
    return responses.reshape(H * W, -1).T  # (P Q, H W)


def _pool_output_size(n: int, kernel_size: int, padding: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """:func:`conv_output_size`, or with ``ceil_mode`` PyTorch's rounding up: ceil((n + 2p - span) / s) + 1,
    span = d (k - 1) + 1, less the last window if it would start in the right padding ((out - 1) s >= n + p)."""
    if not ceil_mode:
        return conv_output_size(n, kernel_size, padding, stride, dilation)
    span = dilation * (kernel_size - 1) + 1
    out = -((span - n - 2 * padding) // stride) + 1  # ceil((n + 2p - span) / s) + 1
    if (out - 1) * stride >= n + padding:  # the last window would hold only right padding and beyond
        out -= 1
    if out < 1:
        raise ValueError(f"kernel size {kernel_size} (dilation {dilation}) is larger than the padded input "
                         f"({n} + 2 * {padding})")
    return out


def _overhang(shape: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
              dilation: tuple[int, int], ceil_mode: bool) -> tuple[int, int]:
    """How many rows and columns the last windows reach past the bottom and right padding of an input of
    ``shape`` (H, W): (0, 0) unless ``ceil_mode``; raises if no window fits."""
    return tuple(max(0, (_pool_output_size(n, k, p, s, d, ceil_mode) - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
                 for n, k, s, p, d in zip(shape, kernel, stride, padding, dilation))


@_images_or_one
def max_pool2d(X: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               dilation: IntPair = 1, ceil_mode: bool = False) -> torch.Tensor:
    """The largest entry of each window, per channel (D2L §6.5); taps ``dilation`` apart. Padding counts
    as -inf (an integer type's least value), so it is never the maximum; with ``ceil_mode`` the output
    size rounds up and a last window hanging over the edge takes the maximum of what it covers. Where a
    window holds several equal maxima (zeros after a ReLU), the gradient is split evenly among them;
    PyTorch's kernel gives it all to one. Not taken: ``return_indices``."""
    kernel, stride, padding = _pool_args(kernel_size, stride, padding)
    dilation = _pair(dilation, "dilation")
    extra = _overhang(X.shape[-2:], kernel, stride, padding, dilation, ceil_mode)
    lowest = -math.inf if X.is_floating_point() else torch.iinfo(X.dtype).min  # never a window's maximum
    return _windows(X, kernel, stride, padding, lowest, dilation, extra).amax(dim=(-2, -1))  # (B, C, P, Q)


@_images_or_one
def avg_pool2d(X: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> torch.Tensor:
    """The mean of each window, per channel (D2L §6.5). Padding is zeros; with ``count_include_pad``
    (PyTorch's default) they count in the divisor, else only the window's real entries do. With
    ``ceil_mode`` the output size rounds up, and a last window hanging over the bottom or right edge
    sums what it covers and divides by what it covers (never by the entries past the padding), as
    ``F.avg_pool2d``. ``divisor_override`` divides every sum by itself instead (arguments in
    ``F.avg_pool2d``'s order)."""
    kernel, stride, padding = _pool_args(kernel_size, stride, padding)
    extra = _overhang(X.shape[-2:], kernel, stride, padding, (1, 1), ceil_mode)
    sums = _windows(X, kernel, stride, padding, extra=extra).sum(dim=(-2, -1))  # (B, C, P, Q)
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("divisor_override must not be zero")
        return sums / divisor_override
    # what counts in each divisor: the input, its padding too with count_include_pad, never the overhang
    ones = X.new_ones((1, 1, *X.shape[-2:]))
    counted = _pad(ones, padding, float(count_include_pad))  # (1, 1, H + 2 ph, W + 2 pw)
    counts = _windows(counted, kernel, stride, (0, 0), extra=extra).sum(dim=(-2, -1))  # (1, 1, P, Q)
    return sums / counts


def _pool_args(kernel_size: IntPair, stride: IntPair | None, padding: IntPair):
    """(kernel, stride, padding) as pairs; the stride defaults to the window size, as in PyTorch."""
    kernel, padding = _pair(kernel_size, "kernel_size"), _pair(padding, "padding", minimum=0)
    if any(2 * p > k for k, p in zip(kernel, padding)):
        raise ValueError(f"pooling padding {padding} must be at most half the window {kernel}, "
                         "else some windows would hold only padding")
    return kernel, kernel if stride is None else _pair(stride, "stride"), padding


class _Conv(nn.Module):
    """What both convolution layers hold (channels, groups, kernel size, stride, padding, dilation),
    and their parameters drawn as torch draws them: the weight, then the bias, each from
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = the weight's second axis times kh * kw (torch's
    kaiming_uniform_(a=sqrt(5)) and its bias bound)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair, padding: IntPair,
                 dilation: IntPair, groups: int, bias: bool, transposed: bool):
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must both be divisible "
                             f"by groups={groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
        self.padding, self.dilation = _pair(padding, "padding", minimum=0), _pair(dilation, "dilation")
        # (O, C/g, kh, kw) for a convolution, (C, O/g, kh, kw) for a transposed one
        shape = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        bound = 1 / math.sqrt(shape[1] * self.kernel_size[0] * self.kernel_size[1])
        self.weight = nn.Parameter(torch.empty(*shape, *self.kernel_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")


class Conv2d(_Conv):
    """A convolution layer from :func:`conv2d` (D2L §6.2.2) with ``nn.Conv2d``'s arguments, parameter
    names, shapes and initial draws: weight (O, C/g, kh, kw), then bias (O,), fan_in = C/g * kh * kw."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         transposed=False)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return conv2d(X, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_Conv):
    """A transposed convolution layer from :func:`conv_transpose2d` (D2L §13.10) with
    ``nn.ConvTranspose2d``'s arguments, parameter names, shapes and initial draws: weight
    (C, O/g, kh, kw), then bias (O,), fan_in = O/g * kh * kw (torch reads it off the weight's
    second axis)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1, bias: bool = True,
                 dilation: IntPair = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         transposed=True)
        self.output_padding = _pair(output_padding, "output_padding", minimum=0)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return conv_transpose2d(X, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.groups,
                                self.dilation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, output_padding={self.output_padding}"


class _Pool2d(nn.Module):
    """What both pooling layers hold: window size, stride (default: the window size), padding, ceil_mode."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling layer from :func:`max_pool2d` (D2L §6.5), with ``nn.MaxPool2d``'s arguments; not taken:
    ``return_indices=True`` (a ValueError)."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
                 dilation: IntPair = 1, return_indices: bool = False, ceil_mode: bool = False):
        if return_indices:
            raise ValueError("the scratch MaxPool2d does not return indices (return_indices=True); "
                             "ops.fast.MaxPool2d (PyTorch's) does")
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation, self.return_indices = dilation, return_indices

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return max_pool2d(X, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"


class AvgPool2d(_Pool2d):
    """Average pooling layer from :func:`avg_pool2d` (D2L §6.5), with ``nn.AvgPool2d``'s arguments in its
    order: padding counts in the divisor unless ``count_include_pad=False``; ``ceil_mode`` rounds the
    output size up; ``divisor_override`` replaces the divisor."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(X, self.kernel_size, self.stride, self.padding, count_include_pad=self.count_include_pad,
                          ceil_mode=self.ceil_mode, divisor_override=self.divisor_override)


def _adaptive_cells(X: torch.Tensor, output_size: IntPair, reduce) -> torch.Tensor:
    """``reduce(cell, dims)`` of each of P x Q cells of X (B, C, H, W) -> (B, C, P, Q). Output cell (p, q) covers
    rows floor(p H / P) to ceil((p + 1) H / P) - 1 and the same for columns, as torch's adaptive pooling."""
    P, Q = _pair(output_size, "output_size")
    H, W = X.shape[-2:]
    rows = [X[:, :, p * H // P:math.ceil((p + 1) * H / P)] for p in range(P)]  # P slices of (B, C, h_p, W)
    cells = [[reduce(r[..., q * W // Q:math.ceil((q + 1) * W / Q)], (-2, -1)) for q in range(Q)] for r in rows]
    return torch.stack([torch.stack(row, dim=-1) for row in cells], dim=-2)  # (B, C, P, Q)


@_images_or_one
def adaptive_avg_pool2d(X: torch.Tensor, output_size: IntPair) -> torch.Tensor:
    """Average pooling to a fixed output size (P, Q) whatever the input size (D2L §7.3.2 uses
    (1, 1): global average pooling), as ``nn.AdaptiveAvgPool2d``."""
    return _adaptive_cells(X, output_size, lambda cell, dims: cell.mean(dim=dims))


@_images_or_one
def adaptive_max_pool2d(X: torch.Tensor, output_size: IntPair) -> torch.Tensor:
    """Max pooling to a fixed output size (P, Q) whatever the input size (D2L §13.7.1: TinySSD's last
    block is global max pooling, (1, 1)), as ``nn.AdaptiveMaxPool2d``. Equal maxima share the gradient
    evenly (``amax``); PyTorch's kernel gives it all to one."""
    return _adaptive_cells(X, output_size, lambda cell, dims: cell.amax(dim=dims))


class _AdaptivePool2d(nn.Module):
    """What both adaptive pooling layers hold: the output size."""

    def __init__(self, output_size: IntPair):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """:func:`adaptive_avg_pool2d` as a layer."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(X, self.output_size)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """:func:`adaptive_max_pool2d` as a layer."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return adaptive_max_pool2d(X, self.output_size)
