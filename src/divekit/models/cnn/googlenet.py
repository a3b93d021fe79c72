"""GoogLeNet (D2L §7.4): Inception blocks in five stages, for Fashion-MNIST at 96x96.

An Inception block runs four paths side by side on the same input and concatenates their
channels: a 1x1 convolution (c1); 1x1 then 3x3 (c2); 1x1 then 5x5 (c3); 3x3 max-pool then 1x1
(c4). Spatial size is kept, so the output has c1 + c2[1] + c3[1] + c4 channels. Stages b1-b5
(9 Inception blocks in all) each halve height and width; global average pooling and one dense
layer make the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from divekit.models.cnn.base import ConvNet, flat_size
from divekit.ops import get_ops


class Inception(nn.Module):
    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, impl: str = "fast"):
        super().__init__()
        ops = get_ops(impl)
        self.p1_1 = ops.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = ops.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = ops.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.p3_1 = ops.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = ops.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.p4_1 = ops.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = ops.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        p1 = F.relu(self.p1_1(X))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(X))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(X))))
        p4 = F.relu(self.p4_2(self.p4_1(X)))
        return torch.cat((p1, p2, p3, p4), dim=1)  # (B, c1 + c2[1] + c3[1] + c4, H, W)


def googlenet(input_shape: tuple[int, ...] = (1, 96, 96), num_classes: int = 10, impl: str = "fast") -> ConvNet:
    ops = get_ops(impl)

    def pool() -> nn.Module:
        return ops.MaxPool2d(kernel_size=3, stride=2, padding=1)

    b1 = nn.Sequential(ops.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3), nn.ReLU(), pool())
    b2 = nn.Sequential(ops.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
                       ops.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(), pool())
    b3 = nn.Sequential(Inception(192, 64, (96, 128), (16, 32), 32, impl),
                       Inception(256, 128, (128, 192), (32, 96), 64, impl), pool())
    b4 = nn.Sequential(Inception(480, 192, (96, 208), (16, 48), 64, impl),
                       Inception(512, 160, (112, 224), (24, 64), 64, impl),
                       Inception(512, 128, (128, 256), (24, 64), 64, impl),
                       Inception(512, 112, (144, 288), (32, 64), 64, impl),
                       Inception(528, 256, (160, 320), (32, 128), 128, impl), pool())
    b5 = nn.Sequential(Inception(832, 256, (160, 320), (32, 128), 128, impl),
                       Inception(832, 384, (192, 384), (48, 128), 128, impl))  # (B, 1024, h, w)
    features = nn.Sequential(b1, b2, b3, b4, b5)
    flat_size(features, input_shape, "GoogLeNet")
    head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(1024, num_classes))
    return ConvNet(features, head)
