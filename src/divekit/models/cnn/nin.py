"""Network in network (D2L §7.3): no dense layers at all.

A NiN block is a convolution followed by two 1x1 convolutions (each with ReLU), which act as a
per-pixel fully connected layer. The last block has one channel per class and global average
pooling turns each channel into a logit.
"""

from __future__ import annotations

from torch import nn

from divekit.models.cnn.base import ConvNet, flat_size
from divekit.ops import get_ops


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
              impl: str = "fast") -> nn.Sequential:
    ops = get_ops(impl)
    return nn.Sequential(
        ops.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(),
        ops.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        ops.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )


def nin(input_shape: tuple[int, ...] = (1, 224, 224), num_classes: int = 10, impl: str = "fast") -> ConvNet:
    ops = get_ops(impl)
    features = nn.Sequential(
        nin_block(input_shape[0], 96, kernel_size=11, stride=4, padding=0, impl=impl),
        ops.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, stride=1, padding=2, impl=impl),
        ops.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, stride=1, padding=1, impl=impl),
        ops.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, num_classes, kernel_size=3, stride=1, padding=1, impl=impl),  # (B, Q, h, w) class maps
    )
    flat_size(features, input_shape, "NiN")
    head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())  # global average pooling: (B, Q)
    return ConvNet(features, head)
