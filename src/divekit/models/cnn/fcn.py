"""Fully convolutional network, FCN (D2L §13.11): a class for every pixel.

A ResNet-18 without its pooling and output layers turns an image (B, 3, H, W) into features
(B, 512, H/32, W/32); a 1x1 convolution makes them C class scores per cell; a transposed
convolution with kernel 64, stride 32 and padding 16 brings the scores back to (B, C, H, W)
(output side (H/32 - 1) 32 - 2 16 + 64 = H). That last layer starts as bilinear interpolation
(:func:`bilinear_kernel`), so training begins from smoothly upsampled coarse scores.

Letters: B batch size, C classes, H x W image size (multiples of 32), k kernel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from divekit.models.cnn.base import ImageClassifierConfig
from divekit.models.cnn.resnet import Layout, resnet18, ResNetConfig
from divekit.models.registry import Example, register_model
from divekit.ops import Ops
from divekit.options import at_least, each_at_least, option

STRIDE = 32  # ResNet-18's total downsampling


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (in, out, k, k) of a transposed convolution that upsamples each channel on its own by
    bilinear interpolation (D2L §13.11.2): channel i to channel i gets the tent
    (1 - |a - c| / f) (1 - |b - c| / f), f = ceil(k / 2), c its centre; other pairs get 0. With
    stride f and padding f / 2 it doubles (f = 2), ... or multiplies by f an image's size."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = torch.arange(kernel_size, dtype=torch.float32)
    tent = 1 - (taps - center).abs() / factor  # (k,)
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    channels = torch.arange(min(in_channels, out_channels))
    weight[channels, channels] = tent[:, None] * tent[None, :]  # (k, k), the same for every channel
    return weight


@dataclass
class FCNConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((3, 320, 480), "image shape (C, H, W); H and W multiples of 32")
    num_classes: int = option(21, "number of classes, background included (VOC: 21)", at_least(1))
    num_residuals: tuple[int, ...] = option((2, 2, 2, 2), "residual blocks in each of the body's four stages",
                                            each_at_least(1))
    layout: Layout = option("torchvision", "the body's layout: torchvision (its ResNet-18 weights load) or d2l")

    def __post_init__(self):
        super().__post_init__()
        if self.input_shape[1] % STRIDE or self.input_shape[2] % STRIDE:
            raise ValueError(f"FCN takes images whose height and width are multiples of {STRIDE}, got "
                             f"{self.input_shape[1]}x{self.input_shape[2]}")


class FCN(nn.Module):
    """``features`` (a ResNet-18's, the same keys, so a ResNet-18's weights load into it), then
    ``final_conv`` (1x1, 512 -> C) and ``transpose_conv`` (C -> C, k 64, stride 32, padding 16)."""

    def __init__(self, features: nn.Module, num_classes: int, ops: Ops):
        super().__init__()
        self.features = features
        self.final_conv = ops.Conv2d(512, num_classes, kernel_size=1)
        self.transpose_conv = ops.ConvTranspose2d(num_classes, num_classes, kernel_size=2 * STRIDE,
                                                  padding=STRIDE // 2, stride=STRIDE)
        with torch.no_grad():
            self.transpose_conv.weight.copy_(bilinear_kernel(num_classes, num_classes, 2 * STRIDE))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.shape[-2] % STRIDE or X.shape[-1] % STRIDE:
            raise ValueError(f"FCN takes images whose height and width are multiples of {STRIDE}, got "
                             f"{X.shape[-2]}x{X.shape[-1]}")
        scores = self.final_conv(self.features(X))  # (B, C, H/32, W/32)
        return self.transpose_conv(scores)  # (B, C, H, W)


def segmentation_example(cfg: FCNConfig, batch_size: int) -> Example:
    """Images (B, C, H, W) in [0, 1] -> per-pixel logits (B, num_classes, H, W)."""
    return Example((torch.rand(batch_size, *cfg.input_shape),), (batch_size, cfg.num_classes, *cfg.input_shape[1:]))


@register_model("fcn", config=FCNConfig, example=segmentation_example, section="13.11",
                tiny=dict(input_shape=(3, 64, 64), num_residuals=(1, 1, 1, 1), num_classes=3))
def fcn(cfg: FCNConfig, ops: Ops) -> FCN:
    """FCN: a ResNet-18 body, a 1x1 convolution and a bilinearly initialised transposed convolution."""
    body = resnet18(ResNetConfig(input_shape=cfg.input_shape, num_classes=1, num_residuals=cfg.num_residuals,
                                 layout=cfg.layout), ops).features
    return FCN(body, cfg.num_classes, ops)
