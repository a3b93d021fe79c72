"""Network in network (D2L §7.3): no dense layers at all.

A NiN block is a convolution followed by two 1x1 convolutions (each with ReLU), which act as a
per-pixel fully connected layer. The last block has one channel per class and global average
pooling turns each channel into a logit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import option, probability


@dataclass
class NiNConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((1, 224, 224), "image shape (C, H, W)")
    dropout: float = option(0.5, "dropout probability before the last NiN block", probability)


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, ops: Ops) -> nn.Module:
    return ops.Sequential(
        ops.Conv2d(in_channels, out_channels, kernel_size, stride, padding), ops.ReLU(),
        ops.Conv2d(out_channels, out_channels, kernel_size=1), ops.ReLU(),
        ops.Conv2d(out_channels, out_channels, kernel_size=1), ops.ReLU(),
    )


@register_model("nin", config=NiNConfig, example=image_example, section="7.3", tiny=dict(input_shape=(1, 67, 67)))
def nin(cfg: NiNConfig, ops: Ops) -> ConvNet:
    """Network in network: NiN blocks and global average pooling, no dense layer."""
    features = ops.Sequential(
        nin_block(cfg.input_shape[0], 96, kernel_size=11, stride=4, padding=0, ops=ops),
        ops.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, stride=1, padding=2, ops=ops),
        ops.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, stride=1, padding=1, ops=ops),
        ops.MaxPool2d(3, stride=2),
        ops.Dropout(cfg.dropout),
        nin_block(384, cfg.num_classes, kernel_size=3, stride=1, padding=1, ops=ops),  # (B, Q, h, w) class maps
    )
    flat_size(features, cfg.input_shape, "NiN")
    head = ops.Sequential(ops.AdaptiveAvgPool2d((1, 1)), ops.Flatten())  # global average pooling: (B, Q)
    return ConvNet(features, head, ops)
