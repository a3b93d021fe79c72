"""VGG (D2L §7.2): a network made of repeated blocks.

A VGG block is ``num_convs`` 3x3 convolutions (padding 1, ReLU) followed by a 2x2 stride-2
max-pool, which halves height and width. VGG-11 has five blocks; the book trains a small VGG-11
with a quarter of the channels (``ratio`` 4: 16, 32, 64, 128, 128) on Fashion-MNIST at 224x224.
VGG-19 (2, 2, 4, 4, 4 convolutions per block) is the feature extractor of style transfer
(D2L §13.12); its ``features`` are one flat sequence, numbered as torchvision's ``vgg19().features``
(layer 0 the first convolution, 5 the first of the second block, ...), so the book's layer
numbers mean the same layers and torchvision's weights (``features.N.weight``) load.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from divekit.models.cnn.alexnet import dense_head
from divekit.models.cnn.base import ConvNet, ImageClassifierConfig, flat_size
from divekit.models.registry import image_example, register_model
from divekit.ops import Ops
from divekit.options import at_least, option, probability

VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))  # (num_convs, out_channels) per block
VGG19 = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


@dataclass
class VGGConfig(ImageClassifierConfig):
    input_shape: tuple[int, int, int] = option((1, 224, 224), "image shape (C, H, W)")
    ratio: int = option(1, "divide VGG-11's channels by this (the book trains with 4)", at_least(1))
    hidden: int = option(4096, "width of the two dense layers", at_least(1))
    dropout: float = option(0.5, "dropout probability after each dense layer", probability)

    def __post_init__(self):
        super().__post_init__()
        if any(channels % self.ratio for _, channels in VGG11):
            raise ValueError(f"--ratio must divide VGG-11's channels {[c for _, c in VGG11]}, got {self.ratio}")


def vgg_block(num_convs: int, in_channels: int, out_channels: int, ops: Ops) -> nn.Module:
    layers = []
    for i in range(num_convs):
        layers += [ops.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3, padding=1), ops.ReLU()]
    return ops.Sequential(*layers, ops.MaxPool2d(kernel_size=2, stride=2))


def build_vgg(cfg: VGGConfig, ops: Ops) -> ConvNet:
    blocks, in_channels = [], cfg.input_shape[0]
    for num_convs, channels in VGG11:
        blocks.append(vgg_block(num_convs, in_channels, channels // cfg.ratio, ops))
        in_channels = channels // cfg.ratio
    features = ops.Sequential(*blocks)
    head = dense_head(flat_size(features, cfg.input_shape, "VGG"), cfg.num_classes, cfg.hidden, cfg.dropout, ops)
    return ConvNet(features, head, ops)


def flat_features(arch: tuple[tuple[int, int], ...], in_channels: int, ratio: int, ops: Ops) -> nn.Module:
    """The VGG blocks of ``arch`` as one flat Sequential (conv, ReLU, ..., max-pool, ...), torchvision's numbering."""
    layers = []
    for num_convs, channels in arch:
        layers += list(vgg_block(num_convs, in_channels, channels // ratio, ops))
        in_channels = channels // ratio
    return ops.Sequential(*layers)


@register_model("vgg", config=VGGConfig, example=image_example, section="7.2", ratio=4,
                tiny=dict(input_shape=(1, 32, 32), ratio=16, hidden=32))
def vgg(cfg: VGGConfig, ops: Ops) -> ConvNet:
    """The book's small VGG-11: VGG-11 with a quarter of the channels."""
    return build_vgg(cfg, ops)


@register_model("vgg11", config=VGGConfig, example=image_example, section="7.2",
                tiny=dict(input_shape=(1, 32, 32), ratio=16, hidden=32))
def vgg11(cfg: VGGConfig, ops: Ops) -> ConvNet:
    """VGG-11 with its full channels (64, 128, 256, 512, 512)."""
    return build_vgg(cfg, ops)


@register_model("vgg19", config=VGGConfig, example=image_example, section="13.12", input_shape=(3, 224, 224),
                num_classes=1000, tiny=dict(input_shape=(3, 32, 32), ratio=16, hidden=32))
def vgg19(cfg: VGGConfig, ops: Ops) -> ConvNet:
    """VGG-19, its features one flat sequence numbered as torchvision's, so its weights load."""
    features = flat_features(VGG19, cfg.input_shape[0], cfg.ratio, ops)
    head = dense_head(flat_size(features, cfg.input_shape, "VGG-19"), cfg.num_classes, cfg.hidden, cfg.dropout, ops)
    return ConvNet(features, head, ops)
