"""AlexNet (D2L §7.1), for Fashion-MNIST resized to 224x224.

Five convolutions (11x11 stride 4, 5x5, three 3x3) with ReLU and three 3x3 stride-2 max-pools,
then two 4096-wide dense layers with dropout 0.5 and the output layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import at_least, option, probability


@dataclass
class AlexNetConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((1, 224, 224), "image shape (C, H, W)")
    hidden: int = option(4096, "width of the two dense layers", at_least(1))
    dropout: float = option(0.5, "dropout probability after each dense layer", probability)


def dense_head(num_inputs: int, num_classes: int, hidden: int, dropout: float, ops: Ops) -> nn.Module:
    """Flatten, then two ``hidden``-wide ReLU layers with dropout, then the output layer (AlexNet, VGG)."""
    return ops.Sequential(
        ops.Flatten(),
        ops.Linear(num_inputs, hidden), ops.ReLU(), ops.Dropout(dropout),
        ops.Linear(hidden, hidden), ops.ReLU(), ops.Dropout(dropout),
        ops.Linear(hidden, num_classes),
    )


@register_model("alexnet", config=AlexNetConfig, example=image_example, section="7.1",
                tiny=dict(input_shape=(1, 67, 67), hidden=32))
def alexnet(cfg: AlexNetConfig, ops: Ops) -> ConvNet:
    """AlexNet: five convolutions, three max-pools, two wide dense layers with dropout."""
    features = ops.Sequential(
        ops.Conv2d(cfg.input_shape[0], 96, kernel_size=11, stride=4, padding=1), ops.ReLU(),
        ops.MaxPool2d(kernel_size=3, stride=2),
        ops.Conv2d(96, 256, kernel_size=5, padding=2), ops.ReLU(),
        ops.MaxPool2d(kernel_size=3, stride=2),
        ops.Conv2d(256, 384, kernel_size=3, padding=1), ops.ReLU(),
        ops.Conv2d(384, 384, kernel_size=3, padding=1), ops.ReLU(),
        ops.Conv2d(384, 256, kernel_size=3, padding=1), ops.ReLU(),
        ops.MaxPool2d(kernel_size=3, stride=2),
    )
    head = dense_head(flat_size(features, cfg.input_shape, "AlexNet"), cfg.num_classes, cfg.hidden, cfg.dropout, ops)
    return ConvNet(features, head, ops)
