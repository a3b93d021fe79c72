"""LeNet-5 (D2L §6.6) and LeNet with batch normalization (D2L §7.5.4-7.5.5).

Two convolution blocks (5x5 convolution, sigmoid, 2x2 average pooling) then three fully
connected layers (120, 84, Q). The first dense layer's width is 16 * 5 * 5 for 28x28 inputs and is
computed for other sizes. With ``batch_norm``, a batch normalization layer sits between each
convolution or dense layer and its sigmoid, and the first convolution is unpadded, as in §7.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import option


@dataclass
class LeNetConfig(ImageClassifierConfig):
    batch_norm: bool = option(False, "batch normalization before each sigmoid (D2L §7.5)")


def build_lenet(cfg: LeNetConfig, ops: Ops) -> ConvNet:
    def norm(channels: int, dense: bool) -> list[nn.Module]:
        if not cfg.batch_norm:
            return []
        return [ops.BatchNorm1d(channels) if dense else ops.BatchNorm2d(channels)]

    features = ops.Sequential(
        ops.Conv2d(cfg.input_shape[0], 6, kernel_size=5, padding=0 if cfg.batch_norm else 2), *norm(6, False),
        ops.Sigmoid(), ops.AvgPool2d(kernel_size=2, stride=2),
        ops.Conv2d(6, 16, kernel_size=5), *norm(16, False), ops.Sigmoid(),
        ops.AvgPool2d(kernel_size=2, stride=2),
    )
    head = ops.Sequential(
        ops.Flatten(),
        ops.Linear(flat_size(features, cfg.input_shape, "LeNet"), 120), *norm(120, True), ops.Sigmoid(),
        ops.Linear(120, 84), *norm(84, True), ops.Sigmoid(),
        ops.Linear(84, cfg.num_classes),
    )
    return ConvNet(features, head, ops)


@register_model("lenet", config=LeNetConfig, example=image_example, section="6.6")
def lenet(cfg: LeNetConfig, ops: Ops) -> ConvNet:
    """LeNet-5: sigmoid, average pooling, three dense layers."""
    return build_lenet(cfg, ops)


@register_model("lenet-bn", config=LeNetConfig, example=image_example, section="7.5", batch_norm=True)
def lenet_bn(cfg: LeNetConfig, ops: Ops) -> ConvNet:
    """LeNet with batch normalization before every sigmoid."""
    return build_lenet(cfg, ops)
