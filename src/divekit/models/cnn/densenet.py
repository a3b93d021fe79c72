"""DenseNet (D2L §7.7): dense blocks joined by transition layers, for Fashion-MNIST at 96x96.

Where a ResNet block adds its input to its output, a dense block concatenates them: each of its
convolution blocks (BN -> ReLU -> 3x3 convolution, the "pre-activation" order) sees the channels
of every block before it and adds ``growth_rate`` of its own, so a block of n convolutions turns
C channels into C + n * growth_rate. A transition layer (BN -> ReLU -> 1x1 convolution -> 2x2
average pooling with stride 2) halves the channels and the height and width between dense blocks.
The book's net: ResNet's stem (7x7 convolution, BN, ReLU, 3x3 max-pool), four dense blocks of four
convolutions with growth rate 32 (64 -> 192 -> 96 -> 224 -> 112 -> 240 -> 120 -> 248 channels),
then BN, ReLU, global average pooling and one dense layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import at_least, each_at_least, option


@dataclass
class DenseNetConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((1, 96, 96), "image shape (C, H, W)")
    num_convs: tuple[int, ...] = option((4, 4, 4, 4), "convolution blocks in each dense block (one dense block each)",
                                        each_at_least(1))
    growth_rate: int = option(32, "channels each convolution block adds", at_least(1))


def conv_block(input_channels: int, num_channels: int, ops: Ops) -> nn.Module:
    """BN -> ReLU -> 3x3 convolution: (B, input_channels, H, W) -> (B, num_channels, H, W)."""
    return ops.Sequential(ops.BatchNorm2d(input_channels), ops.ReLU(),
                          ops.Conv2d(input_channels, num_channels, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    """``num_convs`` convolution blocks, each fed the concatenation of the block's input and every
    earlier output: (B, C, H, W) -> (B, C + num_convs * num_channels, H, W)."""

    def __init__(self, num_convs: int, input_channels: int, num_channels: int, ops: Ops):
        super().__init__()
        self.net = ops.Sequential(*(conv_block(input_channels + i * num_channels, num_channels, ops)
                                    for i in range(num_convs)))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        for block in self.net:
            X = torch.cat((X, block(X)), dim=1)  # (B, C + growth so far, H, W)
        return X


def transition_block(input_channels: int, num_channels: int, ops: Ops) -> nn.Module:
    """BN -> ReLU -> 1x1 convolution -> 2x2 average pooling: (B, C, H, W) -> (B, num_channels, H/2, W/2)."""
    return ops.Sequential(ops.BatchNorm2d(input_channels), ops.ReLU(),
                          ops.Conv2d(input_channels, num_channels, kernel_size=1),
                          ops.AvgPool2d(kernel_size=2, stride=2))


@register_model("densenet", config=DenseNetConfig, example=image_example, section="7.7",
                tiny=dict(input_shape=(1, 32, 32), num_convs=(1, 1, 1, 1), growth_rate=8))
def densenet(cfg: DenseNetConfig, ops: Ops) -> ConvNet:
    """The book's DenseNet: ResNet's stem, dense blocks with transitions, global average pooling."""
    b1 = ops.Sequential(ops.Conv2d(cfg.input_shape[0], 64, kernel_size=7, stride=2, padding=3),
                        ops.BatchNorm2d(64), ops.ReLU(), ops.MaxPool2d(kernel_size=3, stride=2, padding=1))
    blocks, channels = [], 64
    for i, num_convs in enumerate(cfg.num_convs):
        blocks.append(DenseBlock(num_convs, channels, cfg.growth_rate, ops))
        channels += num_convs * cfg.growth_rate
        if i != len(cfg.num_convs) - 1:  # a transition halves the channels between dense blocks
            blocks.append(transition_block(channels, channels // 2, ops))
            channels //= 2
    features = ops.Sequential(b1, *blocks, ops.BatchNorm2d(channels), ops.ReLU())  # (B, channels, h, w)
    flat_size(features, cfg.input_shape, "DenseNet")
    head = ops.Sequential(ops.AdaptiveAvgPool2d((1, 1)), ops.Flatten(), ops.Linear(channels, cfg.num_classes))
    return ConvNet(features, head, ops)
