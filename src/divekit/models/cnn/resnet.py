"""ResNet (D2L §7.6): residual blocks and the book's ResNet-18, in the book's layout and in
torchvision's (whose ImageNet weights the book fine-tunes, D2L §13.2).

A residual block computes relu(F(X) + X) with F = conv3x3 -> BN -> ReLU -> conv3x3 -> BN, so it
only has to learn the residual F(X) = f(X) - X. When it changes the number of channels or
strides, a 1x1 convolution (with the same stride) brings X to F(X)'s shape. ResNet-18: a 7x7
stride-2 stem with BN and max-pool, four stages of two residual blocks (64, 128, 256, 512
channels; each stage after the first halves height and width), global average pooling, dense.

torchvision's ResNet-18 is the same network but for two details: its convolutions have no bias
(a batch norm follows each), and its shortcut's 1x1 convolution is followed by a batch norm.
``layout="torchvision"`` builds that, and :func:`from_torchvision` renames a state dict of
torchvision's keys (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer2.0.downsample.0``,
``fc``) to this model's (``features.0.0``, ``features.0.1``, ``features.1.0.conv1``, ...,
``features.2.0.conv3``, ``head.2``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import each_at_least, option

Layout = Literal["d2l", "torchvision"]


@dataclass
class ResNetConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((1, 96, 96), "image shape (C, H, W)")
    num_residuals: tuple[int, ...] = option((2, 2, 2, 2), "residual blocks in each of the four stages (ResNet-18: 2,2,2,2)",
                                            each_at_least(1))
    layout: Layout = option("d2l", "d2l: the book's blocks; torchvision: convolutions without bias and a batch norm "
                                   "on the shortcut, so torchvision's ResNet-18 weights load")

    def __post_init__(self):
        super().__post_init__()
        if len(self.num_residuals) != 4:
            raise ValueError(f"--num-residuals gives the blocks of ResNet's four stages, got {self.num_residuals}")


class Residual(nn.Module):
    def __init__(self, input_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1, *,
                 ops: Ops, layout: Layout = "d2l"):
        super().__init__()
        bias = layout == "d2l"
        self.conv1 = ops.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides, bias=bias)
        self.conv2 = ops.Conv2d(num_channels, num_channels, kernel_size=3, padding=1, bias=bias)
        self.conv3 = (ops.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides, bias=bias)
                      if use_1x1conv else None)
        self.bn1 = ops.BatchNorm2d(num_channels)
        self.bn2 = ops.BatchNorm2d(num_channels)
        self.bn3 = ops.BatchNorm2d(num_channels) if use_1x1conv and layout == "torchvision" else None
        self.relu = ops.ReLU()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = self.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))  # F(X): (B, num_channels, H / strides, W / strides)
        if self.conv3 is not None:
            X = self.conv3(X)  # the shortcut, reshaped to F(X)'s shape
            if self.bn3 is not None:
                X = self.bn3(X)
        return self.relu(Y + X)


def resnet_block(input_channels: int, num_channels: int, num_residuals: int, first_block: bool = False, *,
                 ops: Ops, layout: Layout = "d2l") -> nn.Module:
    """A ResNet stage: the first block halves H and W and changes channels (unless it is the first stage)."""
    blocks = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blocks.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2, ops=ops, layout=layout))
        else:
            blocks.append(Residual(num_channels, num_channels, ops=ops, layout=layout))
    return ops.Sequential(*blocks)


_TORCHVISION_KEYS = (  # (torchvision's key pattern, this model's), for a ResNet-18 in torchvision's layout
    (r"conv1\.(.*)", r"features.0.0.\1"),
    (r"bn1\.(.*)", r"features.0.1.\1"),
    (r"layer(\d)\.(\d+)\.(conv|bn)([12])\.(.*)", r"features.\1.\2.\3\4.\5"),
    (r"layer(\d)\.(\d+)\.downsample\.0\.(.*)", r"features.\1.\2.conv3.\3"),
    (r"layer(\d)\.(\d+)\.downsample\.1\.(.*)", r"features.\1.\2.bn3.\3"),
    (r"fc\.(.*)", r"head.2.\1"),
)


def from_torchvision(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of torchvision's ResNet (``torchvision.models.resnet18().state_dict()``, or a
    file of its ImageNet weights) with this module's keys, for a ResNet built with
    ``layout="torchvision"``. A key of neither form is an error."""
    renamed, unknown = {}, []
    for key, tensor in state_dict.items():
        for pattern, replacement in _TORCHVISION_KEYS:
            if re.fullmatch(pattern, key):
                renamed[re.sub(pattern, replacement, key)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} keys are not a torchvision ResNet's: {', '.join(unknown[:5])}")
    return renamed


@register_model("resnet18", config=ResNetConfig, example=image_example, section="7.6",
                tiny=dict(input_shape=(1, 32, 32), num_residuals=(1, 1, 1, 1)))
def resnet18(cfg: ResNetConfig, ops: Ops) -> ConvNet:
    """The book's ResNet-18: a 7x7 stem and four stages of residual blocks."""
    b1 = ops.Sequential(ops.Conv2d(cfg.input_shape[0], 64, kernel_size=7, stride=2, padding=3,
                                   bias=cfg.layout == "d2l"),
                        ops.BatchNorm2d(64), ops.ReLU(), ops.MaxPool2d(kernel_size=3, stride=2, padding=1))
    channels = (64, 64, 128, 256, 512)
    stages = [resnet_block(channels[i], channels[i + 1], n, first_block=i == 0, ops=ops, layout=cfg.layout)
              for i, n in enumerate(cfg.num_residuals)]
    features = ops.Sequential(b1, *stages)  # (B, 512, h, w)
    flat_size(features, cfg.input_shape, "ResNet-18")
    head = ops.Sequential(ops.AdaptiveAvgPool2d((1, 1)), ops.Flatten(), ops.Linear(512, cfg.num_classes))
    return ConvNet(features, head, ops)


@register_model("resnet18-tv", config=ResNetConfig, example=image_example, section="13.2", layout="torchvision",
                input_shape=(3, 224, 224), num_classes=1000,
                tiny=dict(input_shape=(3, 32, 32), num_residuals=(1, 1, 1, 1), num_classes=10))
def resnet18_tv(cfg: ResNetConfig, ops: Ops) -> ConvNet:
    """ResNet-18 in torchvision's layout (convolutions without bias, batch norm on the shortcuts),
    whose weights load."""
    return resnet18(cfg, ops)
