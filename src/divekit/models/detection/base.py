"""What the detectors share: their config, the detector interface, and the book's down-sampling block
and base network (D2L §13.7.1), which TinySSD and the grid detector both start from.

Letters: B batch size, C channels, H x W image size, h x w feature map size, K object classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from divekit.ops import Ops
from divekit.options import Checked, at_least, each_at_least, option


@dataclass
class DetectorConfig(Checked):
    """What every detector is sized by: its images (C, H, W), its object classes (background not
    counted) and the widths of its convolution blocks."""

    HALVINGS_AFTER_BASE: ClassVar[int] = 1  # halvings of the last feature map after the base network's

    input_shape: tuple[int, int, int] = option((3, 256, 256), "image shape (C, H, W)")
    num_classes: int = option(1, "number of object classes, background not counted", at_least(1))
    base_channels: tuple[int, ...] = option((16, 32, 64), "output channels of the base network's down-sampling "
                                            "blocks (D2L §13.7.1: 16, 32, 64)", each_at_least(1))
    num_channels: int = option(128, "channels of the down-sampling blocks after the base network", at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"a detector takes images (C, H, W), got input shape {self.input_shape}")
        if min(self.input_shape[1:]) < self.min_side:
            raise ValueError(f"{type(self).__name__}: images must be at least {self.min_side}x{self.min_side} with "
                             f"{len(self.base_channels)} base blocks (every feature map needs a cell), got "
                             f"{self.input_shape[1]}x{self.input_shape[2]}")

    @property
    def min_side(self) -> int:
        """The smallest image side whose last feature map keeps a cell: one halving per base block, then
        ``HALVINGS_AFTER_BASE`` more."""
        return 2 ** (len(self.base_channels) + self.HALVINGS_AFTER_BASE)


class Detector(nn.Module):
    """Interface: ``forward(X)`` with X (B, C, H, W) in [0, 1] returns the raw outputs the family's
    training task reads; ``detect(X)`` returns a list of B dicts ``boxes`` (N, 4) relative corners,
    ``scores`` (N,), ``labels`` (N,) class indices (in evaluation mode without gradients, the mode it was
    in restored after: :func:`~divekit.models.blocks.inference`)."""

    def detect(self, X: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError(f"{type(self).__name__} must define detect(X)")


def down_sample_blk(ops: Ops, in_channels: int, out_channels: int) -> nn.Module:
    """Two 3x3 convolutions (padding 1), each with batch normalization and ReLU, then 2x2 max pooling
    (D2L §13.7.1): (B, C_in, h, w) -> (B, C_out, h / 2, w / 2). The ReLUs work in place on the batch
    normalization's output (the book's make a new tensor): the same numbers, and training TinySSD on
    a CPU was 1.1-1.35x faster (the blocks' large activations are memory-bound)."""
    layers = []
    for _ in range(2):
        layers += [ops.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), ops.BatchNorm2d(out_channels),
                   ops.ReLU(inplace=True)]
        in_channels = out_channels
    layers.append(ops.MaxPool2d(2))
    return ops.Sequential(*layers)


def base_net(ops: Ops, in_channels: int, channels: Sequence[int]) -> nn.Module:
    """The book's base network: one down-sampling block per entry of ``channels`` (16, 32, 64), so
    (B, 3, 256, 256) -> (B, 64, 32, 32) (D2L §13.7.1)."""
    sizes = [in_channels, *channels]
    return ops.Sequential(*(down_sample_blk(ops, sizes[i], sizes[i + 1]) for i in range(len(channels))))
