"""LeNet-5 (D2L §6.6) and LeNet with batch normalization (D2L §7.5.4-7.5.5).

Two convolution blocks (5x5 convolution, sigmoid, 2x2 average pooling) then three fully
connected layers (120, 84, Q). The first dense layer's width is 16 * 5 * 5 for 28x28 inputs and is
computed for other sizes. With ``batch_norm``, a batch normalization layer sits between each
convolution or dense layer and its sigmoid, and the first convolution is unpadded, as in §7.5.
"""

from __future__ import annotations

from torch import nn

from divekit.models.cnn.base import ConvNet, flat_size
from divekit.ops import get_ops


def lenet(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, impl: str = "fast",
          batch_norm: bool = False) -> ConvNet:
    """LeNet-5 on ``impl``'s convolution, pooling (and batch norm) layers."""
    ops = get_ops(impl)

    def norm(channels: int, num_dims: int) -> list[nn.Module]:
        return [ops.BatchNorm(channels, num_dims)] if batch_norm else []

    features = nn.Sequential(
        ops.Conv2d(input_shape[0], 6, kernel_size=5, padding=0 if batch_norm else 2), *norm(6, 4), nn.Sigmoid(),
        ops.AvgPool2d(kernel_size=2, stride=2),
        ops.Conv2d(6, 16, kernel_size=5), *norm(16, 4), nn.Sigmoid(),
        ops.AvgPool2d(kernel_size=2, stride=2),
    )
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(flat_size(features, input_shape, "LeNet"), 120), *norm(120, 2), nn.Sigmoid(),
        nn.Linear(120, 84), *norm(84, 2), nn.Sigmoid(),
        nn.Linear(84, num_classes),
    )
    return ConvNet(features, head)


def lenet_bn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, impl: str = "fast") -> ConvNet:
    """LeNet with batch normalization (D2L §7.5): scratch or PyTorch batch norm by ``impl``."""
    return lenet(input_shape, num_classes, impl, batch_norm=True)
