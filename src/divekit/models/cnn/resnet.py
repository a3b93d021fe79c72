"""ResNet (D2L §7.6): residual blocks and the book's ResNet-18.

A residual block computes relu(F(X) + X) with F = conv3x3 -> BN -> ReLU -> conv3x3 -> BN, so it
only has to learn the residual F(X) = f(X) - X. When it changes the number of channels or
strides, a 1x1 convolution (with the same stride) brings X to F(X)'s shape. ResNet-18: a 7x7
stride-2 stem with BN and max-pool, four stages of two residual blocks (64, 128, 256, 512
channels; each stage after the first halves height and width), global average pooling, dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import each_at_least, option


@dataclass
class ResNetConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((1, 96, 96), "image shape (C, H, W)")
    num_residuals: tuple[int, ...] = option((2, 2, 2, 2), "residual blocks in each of the four stages (ResNet-18: 2,2,2,2)",
                                            each_at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if len(self.num_residuals) != 4:
            raise ValueError(f"--num-residuals gives the blocks of ResNet's four stages, got {self.num_residuals}")


class Residual(nn.Module):
    def __init__(self, input_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1, *,
                 ops: Ops):
        super().__init__()
        self.conv1 = ops.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = ops.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = ops.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = ops.BatchNorm2d(num_channels)
        self.bn2 = ops.BatchNorm2d(num_channels)
        self.relu = ops.ReLU()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = self.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))  # F(X): (B, num_channels, H / strides, W / strides)
        if self.conv3 is not None:
            X = self.conv3(X)  # the shortcut, reshaped to F(X)'s shape
        return self.relu(Y + X)


def resnet_block(input_channels: int, num_channels: int, num_residuals: int, first_block: bool = False, *,
                 ops: Ops) -> nn.Module:
    """A ResNet stage: the first block halves H and W and changes channels (unless it is the first stage)."""
    blocks = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blocks.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2, ops=ops))
        else:
            blocks.append(Residual(num_channels, num_channels, ops=ops))
    return ops.Sequential(*blocks)


@register_model("resnet18", config=ResNetConfig, example=image_example, section="7.6",
                tiny=dict(input_shape=(1, 32, 32), num_residuals=(1, 1, 1, 1)))
def resnet18(cfg: ResNetConfig, ops: Ops) -> ConvNet:
    """The book's ResNet-18: a 7x7 stem and four stages of residual blocks."""
    b1 = ops.Sequential(ops.Conv2d(cfg.input_shape[0], 64, kernel_size=7, stride=2, padding=3), ops.BatchNorm2d(64),
                        ops.ReLU(), ops.MaxPool2d(kernel_size=3, stride=2, padding=1))
    channels = (64, 64, 128, 256, 512)
    stages = [resnet_block(channels[i], channels[i + 1], n, first_block=i == 0, ops=ops)
              for i, n in enumerate(cfg.num_residuals)]
    features = ops.Sequential(b1, *stages)  # (B, 512, h, w)
    flat_size(features, cfg.input_shape, "ResNet-18")
    head = ops.Sequential(ops.AdaptiveAvgPool2d((1, 1)), ops.Flatten(), ops.Linear(512, cfg.num_classes))
    return ConvNet(features, head, ops)
