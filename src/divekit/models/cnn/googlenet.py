"""GoogLeNet (D2L §7.4): Inception blocks in five stages, for Fashion-MNIST at 96x96.

An Inception block runs four paths side by side on the same input and concatenates their
channels: a 1x1 convolution (c1); 1x1 then 3x3 (c2); 1x1 then 5x5 (c3); 3x3 max-pool then 1x1
(c4). Spatial size is kept, so the output has c1 + c2[1] + c3[1] + c4 channels. Of the stages
b1-b5 (9 Inception blocks in all), b1 divides height and width by 4, b2-b4 halve them and b5 keeps
them; global average pooling and one dense layer make the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import option


@dataclass
class GoogLeNetConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((1, 96, 96), "image shape (C, H, W)")


class Inception(nn.Module):
    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, ops: Ops):
        super().__init__()
        self.p1_1 = ops.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = ops.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = ops.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.p3_1 = ops.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = ops.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.p4_1 = ops.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = ops.Conv2d(in_channels, c4, kernel_size=1)
        self.relu = ops.ReLU()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        p1 = self.relu(self.p1_1(X))
        p2 = self.relu(self.p2_2(self.relu(self.p2_1(X))))
        p3 = self.relu(self.p3_2(self.relu(self.p3_1(X))))
        p4 = self.relu(self.p4_2(self.p4_1(X)))
        return torch.cat((p1, p2, p3, p4), dim=1)  # (B, c1 + c2[1] + c3[1] + c4, H, W)


@register_model("googlenet", config=GoogLeNetConfig, example=image_example, section="7.4",
                tiny=dict(input_shape=(1, 32, 32)))
def googlenet(cfg: GoogLeNetConfig, ops: Ops) -> ConvNet:
    """GoogLeNet: a stem, nine Inception blocks in three stages, global average pooling."""
    def pool() -> nn.Module:
        return ops.MaxPool2d(kernel_size=3, stride=2, padding=1)

    b1 = ops.Sequential(ops.Conv2d(cfg.input_shape[0], 64, kernel_size=7, stride=2, padding=3), ops.ReLU(), pool())
    b2 = ops.Sequential(ops.Conv2d(64, 64, kernel_size=1), ops.ReLU(),
                        ops.Conv2d(64, 192, kernel_size=3, padding=1), ops.ReLU(), pool())
    b3 = ops.Sequential(Inception(192, 64, (96, 128), (16, 32), 32, ops),
                        Inception(256, 128, (128, 192), (32, 96), 64, ops), pool())
    b4 = ops.Sequential(Inception(480, 192, (96, 208), (16, 48), 64, ops),
                        Inception(512, 160, (112, 224), (24, 64), 64, ops),
                        Inception(512, 128, (128, 256), (24, 64), 64, ops),
                        Inception(512, 112, (144, 288), (32, 64), 64, ops),
                        Inception(528, 256, (160, 320), (32, 128), 128, ops), pool())
    b5 = ops.Sequential(Inception(832, 256, (160, 320), (32, 128), 128, ops),
                        Inception(832, 384, (192, 384), (48, 128), 128, ops))  # (B, 1024, h, w)
    features = ops.Sequential(b1, b2, b3, b4, b5)
    flat_size(features, cfg.input_shape, "GoogLeNet")
    head = ops.Sequential(ops.AdaptiveAvgPool2d((1, 1)), ops.Flatten(), ops.Linear(1024, cfg.num_classes))
    return ConvNet(features, head, ops)
