"""What every CNN of D2L chapters 6-7 shares: a typed config, a feature extractor and a head.

Letters: B batch size, C channels, H x W image size, Q number of classes.

Splitting ``forward_features`` (B, C, H, W) -> feature maps from ``forward_head`` (feature maps
-> (B, Q) logits) is what later chapters need to reuse a backbone (fine-tuning, SSD, FCN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from divekit.models.blocks import evaluating
from divekit.ops import Ops
from divekit.options import Checked, at_least, option


@dataclass
class ImageClassifierConfig(Checked):
    """What every image classifier is sized by: its input (C, H, W) and its number of classes."""

    input_shape: tuple[int, int, int] = option((1, 28, 28), "image shape (C, H, W)")
    num_classes: int = option(10, "number of classes", at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"an image classifier takes images (C, H, W), got input shape {self.input_shape}")


class ConvNet(nn.Module):
    """``head(features(X))``, initialised as the book's ``train_ch6`` does: Xavier-uniform weights
    for every convolution and fully connected layer (D2L §6.6.2), default biases. With
    ``frozen_features`` (fine-tuning's fixed feature extractor, D2L §13.2.2) the features stay in
    evaluation mode when the model trains: their batch normalization keeps its running statistics
    and uses them, as a frozen body should."""

    frozen_features = False

    def __init__(self, features: nn.Module, head: nn.Module, ops: Ops):
        super().__init__()
        self.features = features
        self.head = head
        for m in self.modules():
            if isinstance(m, (ops.Linear, ops.Conv2d)):
                ops.xavier_uniform_(m.weight)

    def train(self, mode: bool = True) -> ConvNet:
        super().train(mode)
        if self.frozen_features:
            self.features.eval()
        return self

    def forward_features(self, X: torch.Tensor) -> torch.Tensor:
        return self.features(X)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(X))


def layer_shapes(model: ConvNet, X: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(layer class name, output shape) of each top-level layer, what the book prints (D2L §6.6.1);
    run in evaluation mode, so batch norm's running statistics stay as they are."""
    shapes = []
    with evaluating(model):
        for layer in [*model.features, *model.head]:
            X = layer(X)
            shapes.append((type(layer).__name__, tuple(X.shape)))
    return shapes


def flat_size(features: nn.Module, input_shape: tuple[int, ...], model: str) -> int:
    """Number of values per example after ``features``, from a dry run on one zero image: the
    width of the first dense layer, which depends on the input size. Also the check that the
    model can take images of ``input_shape`` at all, with an error that says what to do."""
    try:
        with evaluating(features):
            return features(torch.zeros(1, *input_shape)).numel()
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{model} cannot take {input_shape[1]}x{input_shape[2]} images (its windows do not fit); "
                         f"use larger images, e.g. with --resize ({error})") from None
