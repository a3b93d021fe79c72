"""ResNet (D2L §7.6): residual blocks and the book's ResNet-18.

A residual block computes relu(F(X) + X) with F = conv3x3 -> BN -> ReLU -> conv3x3 -> BN, so it
only has to learn the residual F(X) = f(X) - X. When it changes the number of channels or
strides, a 1x1 convolution (with the same stride) brings X to F(X)'s shape. ResNet-18: a 7x7
stride-2 stem with BN and max-pool, four stages of two residual blocks (64, 128, 256, 512
channels; each stage after the first halves height and width), global average pooling, dense.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from divekit.models.cnn.base import ConvNet, flat_size
from divekit.ops import get_ops


class Residual(nn.Module):
    def __init__(self, input_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1,
                 impl: str = "fast"):
        super().__init__()
        ops = get_ops(impl)
        self.conv1 = ops.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = ops.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = ops.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = ops.BatchNorm(num_channels, 4)
        self.bn2 = ops.BatchNorm(num_channels, 4)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))  # F(X): (B, num_channels, H / strides, W / strides)
        if self.conv3 is not None:
            X = self.conv3(X)  # the shortcut, reshaped to F(X)'s shape
        return F.relu(Y + X)


def resnet_block(input_channels: int, num_channels: int, num_residuals: int, first_block: bool = False,
                 impl: str = "fast") -> nn.Sequential:
    """A ResNet stage: the first block halves H and W and changes channels (unless it is the first stage)."""
    blocks = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blocks.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2, impl=impl))
        else:
            blocks.append(Residual(num_channels, num_channels, impl=impl))
    return nn.Sequential(*blocks)


def resnet18(input_shape: tuple[int, ...] = (1, 96, 96), num_classes: int = 10, impl: str = "fast") -> ConvNet:
    ops = get_ops(impl)
    b1 = nn.Sequential(ops.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3), ops.BatchNorm(64, 4), nn.ReLU(),
                       ops.MaxPool2d(kernel_size=3, stride=2, padding=1))
    features = nn.Sequential(b1,
                             resnet_block(64, 64, 2, first_block=True, impl=impl),
                             resnet_block(64, 128, 2, impl=impl),
                             resnet_block(128, 256, 2, impl=impl),
                             resnet_block(256, 512, 2, impl=impl))  # (B, 512, h, w)
    flat_size(features, input_shape, "ResNet-18")
    head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, num_classes))
    return ConvNet(features, head)
