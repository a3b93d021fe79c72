"""VGG (D2L §7.2): a network made of repeated blocks.

A VGG block is ``num_convs`` 3x3 convolutions (padding 1, ReLU) followed by a 2x2 stride-2
max-pool, which halves height and width. VGG-11 has five blocks; the book trains a small VGG-11
with a quarter of the channels (16, 32, 64, 128, 128) on Fashion-MNIST at 224x224.
"""

from __future__ import annotations

from torch import nn

from divekit.models.cnn.alexnet import dense_head
from divekit.models.cnn.base import ConvNet, flat_size
from divekit.ops import get_ops

VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))  # (num_convs, out_channels) per block
VGG11_SMALL = tuple((num_convs, channels // 4) for num_convs, channels in VGG11)


def vgg_block(num_convs: int, in_channels: int, out_channels: int, impl: str = "fast") -> nn.Sequential:
    ops = get_ops(impl)
    layers = []
    for i in range(num_convs):
        layers += [ops.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, ops.MaxPool2d(kernel_size=2, stride=2))


def vgg(input_shape: tuple[int, ...] = (1, 224, 224), num_classes: int = 10, impl: str = "fast",
        arch: tuple[tuple[int, int], ...] = VGG11_SMALL) -> ConvNet:
    blocks, in_channels = [], input_shape[0]
    for num_convs, out_channels in arch:
        blocks.append(vgg_block(num_convs, in_channels, out_channels, impl))
        in_channels = out_channels
    features = nn.Sequential(*blocks)
    return ConvNet(features, dense_head(flat_size(features, input_shape, "VGG"), num_classes))
