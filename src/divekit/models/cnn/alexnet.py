"""AlexNet (D2L §7.1), for Fashion-MNIST resized to 224x224.

Five convolutions (11x11 stride 4, 5x5, three 3x3) with ReLU and three 3x3 stride-2 max-pools,
then two 4096-wide dense layers with dropout 0.5 and the output layer.
"""

from __future__ import annotations

from torch import nn

from divekit.models.cnn.base import ConvNet, flat_size
from divekit.ops import get_ops


def alexnet(input_shape: tuple[int, ...] = (1, 224, 224), num_classes: int = 10, impl: str = "fast") -> ConvNet:
    ops = get_ops(impl)
    features = nn.Sequential(
        ops.Conv2d(input_shape[0], 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        ops.MaxPool2d(kernel_size=3, stride=2),
        ops.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        ops.MaxPool2d(kernel_size=3, stride=2),
        ops.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        ops.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        ops.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        ops.MaxPool2d(kernel_size=3, stride=2),
    )
    return ConvNet(features, dense_head(flat_size(features, input_shape, "AlexNet"), num_classes))


def dense_head(num_inputs: int, num_classes: int, hidden: int = 4096, dropout: float = 0.5) -> nn.Sequential:
    """Flatten, then two ``hidden``-wide ReLU layers with dropout, then the output layer (AlexNet, VGG)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(num_inputs, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
